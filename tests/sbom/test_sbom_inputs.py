"""Generation from Yocto manifests, dpkg status files and merged CycloneDX SBOMs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sbom import validate_sbom
from sbom.dpkg import load_dpkg_status
from sbom.errors import SbomInputError, SbomValidationError
from sbom.manifest import ComponentSpec
from sbom.merge import load_cyclonedx
from sbom.yocto import load_yocto

IMAGE_MANIFEST = """\
busybox core2_64 1.35.0-r0
libz1 core2_64 1.2.11-r0
openssl core2_64 3.0.1-r0
"""

LICENSE_MANIFEST = """\
PACKAGE NAME: busybox
PACKAGE VERSION: 1.35.0
RECIPE NAME: busybox
LICENSE: GPL-2.0-only & bzip2-1.0.4

PACKAGE NAME: libz1
PACKAGE VERSION: 1.2.11
RECIPE NAME: zlib
LICENSE: Zlib

PACKAGE NAME: openssl
PACKAGE VERSION: 3.0.1
RECIPE NAME: openssl
LICENSE: Apache-2.0 &
"""

DPKG_STATUS = """\
Package: zlib1g
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 164
Maintainer: Mark Brown <broonie@debian.org>
Architecture: amd64
Multi-Arch: same
Source: zlib
Version: 1:1.2.11.dfsg-2
Depends: libc6 (>= 2.14)
Description: compression library - runtime
 zlib is a library implementing the deflate compression method found
 in gzip and PKZIP.

Package: libc6
Status: install ok installed
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Source: glibc
Version: 2.31-13+deb11u5
Description: GNU C Library: Shared libraries

Package: removed-pkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["components"]}


def _props(component: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in component.get("properties", [])}


def test_yocto_image_and_license_manifests_give_schema_valid_components(
    tmp_path: Path, make_sbom: Callable[..., bytes]
) -> None:
    specs = load_yocto(
        _write(tmp_path, "image.manifest", IMAGE_MANIFEST),
        _write(tmp_path, "license.manifest", LICENSE_MANIFEST),
    )
    document = make_sbom(components=specs)
    validate_sbom(document)
    components = _by_name(json.loads(document))

    zlib = components["libz1"]
    assert zlib["version"] == "1.2.11-r0"
    assert zlib["cpe"] == "cpe:2.3:a:*:zlib:1.2.11:*:*:*:*:*:*:*"
    assert zlib["purl"] == "pkg:generic/libz1@1.2.11-r0?arch=core2_64"
    assert zlib["licenses"] == [{"license": {"id": "Zlib"}}]
    assert _props(zlib)["pumpguard:yocto:recipe"] == "zlib"
    # Yocto states no supplier and no support facts: they stay unknown.
    assert "supplier" not in zlib
    assert _props(zlib)["pumpguard:support-level"] == "unknown"
    assert _props(zlib)["cdx:lifecycle:milestone:endOfSupport"] == "unknown"
    assert components["busybox"]["licenses"] == [
        {"expression": "GPL-2.0-only AND LicenseRef-bzip2-1.0.4"}
    ]
    # Not a valid expression: left out rather than guessed.
    assert "licenses" not in components["openssl"]


def test_yocto_license_manifest_alone_is_enough(tmp_path: Path) -> None:
    specs = load_yocto(license_manifest=_write(tmp_path, "license.manifest", LICENSE_MANIFEST))
    assert [(s.name, s.version) for s in specs] == [
        ("busybox", "1.35.0"),
        ("libz1", "1.2.11"),
        ("openssl", "3.0.1"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("busybox core2_64\n", "line 1: expected '<package> <arch> <version>'"),
        ("busybox core2_64 1.0 extra\n", "line 1"),
        ("ok x86 1.0\nbad name x86 1.0\n", "line 2"),
    ],
)
def test_malformed_yocto_manifest_lines_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SbomInputError, match=message):
        load_yocto(_write(tmp_path, "image.manifest", text))


def test_dpkg_status_gives_installed_packages_with_dependencies(
    tmp_path: Path, make_sbom: Callable[..., bytes]
) -> None:
    specs = load_dpkg_status(_write(tmp_path, "status", DPKG_STATUS), "debian")
    document = make_sbom(components=specs)
    validate_sbom(document)
    doc = json.loads(document)
    components = _by_name(doc)

    assert sorted(components) == ["libc6", "zlib1g"]
    zlib = components["zlib1g"]
    assert zlib["purl"] == "pkg:deb/debian/zlib1g@1:1.2.11.dfsg-2?arch=amd64&upstream=zlib"
    assert zlib["supplier"] == {"name": "Mark Brown <broonie@debian.org>"}
    assert zlib["description"] == "compression library - runtime"
    depends = {d["ref"]: d.get("dependsOn", []) for d in doc["dependencies"]}
    assert depends["component:zlib1g@1:1.2.11.dfsg-2"] == ["component:libc6@2.31-13+deb11u5"]
    assert depends["firmware:sigma-spectrum@8.1.0"] == ["component:zlib1g@1:1.2.11.dfsg-2"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Package: a\nStatus: install ok installed\n", "package 'a' has no Version"),
        ("Status: install ok installed\nVersion: 1\n", "line 1: paragraph has no Package"),
        ("Package: a\n continuation\n", None),
        (" orphan continuation\n", "line 1: continuation line without a field"),
        ("Package a\n", "line 1: expected 'Field: value'"),
    ],
)
def test_malformed_dpkg_status_is_refused(tmp_path: Path, text: str, message: str | None) -> None:
    path = _write(tmp_path, "status", text)
    if message is None:
        assert load_dpkg_status(path, "debian") == []  # no Status: not installed
        return
    with pytest.raises(SbomInputError, match=message):
        load_dpkg_status(path, "debian")


def _app_sbom(spec_version: str = "1.5", **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "bomFormat": "CycloneDX",
        "specVersion": spec_version,
        "version": 1,
        "metadata": {
            "component": {
                "type": "application",
                "name": "pump-ui",
                "version": "2.0.1",
                "bom-ref": "app",
            },
        },
        "components": [
            {
                "type": "library",
                "name": "urllib3",
                "version": "2.0.5",
                "bom-ref": "u",
                "purl": "pkg:pypi/urllib3@2.0.5",
                "licenses": [{"license": {"id": "MIT"}}],
                "supplier": {"name": "urllib3 maintainers"},
                "hashes": [{"alg": "SHA-256", "content": "ab" * 32}],
                "properties": [
                    {"name": "pumpguard:support-level", "value": "supported"},
                    {"name": "cdx:lifecycle:milestone:endOfSupport", "value": "2026-01-01"},
                ],
            },
            {
                "type": "library",
                "name": "vendored",
                "bom-ref": "v",
                "licenses": [{"license": {"name": "Some proprietary terms"}}],
            },
        ],
        "dependencies": [{"ref": "app", "dependsOn": ["u", "v"]}, {"ref": "u"}],
    }
    doc.update(changes)
    return doc


@pytest.mark.parametrize("spec_version", ["1.4", "1.5", "1.6"])
def test_merged_cyclonedx_components_keep_their_facts_and_dependencies(
    tmp_path: Path, make_sbom: Callable[..., bytes], spec_version: str
) -> None:
    path = _write(tmp_path, "app.cdx.json", json.dumps(_app_sbom(spec_version)))
    document = make_sbom(components=load_cyclonedx(path))
    validate_sbom(document)
    doc = json.loads(document)
    components = _by_name(doc)

    urllib3 = components["urllib3"]
    assert urllib3["purl"] == "pkg:pypi/urllib3@2.0.5"
    assert urllib3["supplier"] == {"name": "urllib3 maintainers"}
    assert urllib3["hashes"] == [{"alg": "SHA-256", "content": "ab" * 32}]
    assert _props(urllib3)["pumpguard:support-level"] == "supported"
    assert _props(urllib3)["cdx:lifecycle:milestone:endOfSupport"] == "2026-01-01"
    assert components["vendored"]["version"] == "unknown"
    assert "licenses" not in components["vendored"]
    depends = {d["ref"]: d.get("dependsOn", []) for d in doc["dependencies"]}
    assert sorted(depends["component:pump-ui@2.0.1"]) == [
        "component:urllib3@2.0.5",
        "component:vendored@unknown",
    ]
    assert depends["firmware:sigma-spectrum@8.1.0"] == ["component:pump-ui@2.0.1"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"bomFormat": "CycloneDX", "specVersion": ', "not valid JSON"),
        (json.dumps(_app_sbom("1.3")).encode(), "specVersion '1.3' is not supported"),
        (json.dumps(_app_sbom("2.0")).encode(), "specVersion '2.0' is not supported"),
        (json.dumps({"bomFormat": "SPDX"}).encode(), "not a CycloneDX SBOM"),
        (
            json.dumps(_app_sbom(components=[{"type": "gadget", "name": "x"}])).encode(),
            "component #2 \\('x'\\): type 'gadget' is not a CycloneDX component type",
        ),
        (
            json.dumps(_app_sbom(components=[{"type": "library"}])).encode(),
            "not valid CycloneDX 1.5",
        ),
        (
            json.dumps(
                _app_sbom(components=[{"type": "library", "name": "x", "purl": "not a purl"}])
            ).encode(),
            "component #2 \\('x'\\): field 'purl'",
        ),
    ],
)
def test_bad_sboms_to_merge_are_refused_with_a_clear_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "app.cdx.json"
    path.write_bytes(content)
    with pytest.raises(SbomInputError, match=message) as info:
        load_cyclonedx(path)
    assert str(path) in str(info.value)


def test_the_same_component_from_two_inputs_is_merged(
    tmp_path: Path, write_manifest: Callable[[str], Path], make_sbom: Callable[..., bytes]
) -> None:
    manifest = write_manifest(
        """
        [[component]]
        name = "libz1"
        version = "1.2.11-r0"
        supplier = "Jean-loup Gailly and Mark Adler"
        support_level = "supported"
        end_of_support = 2030-01-01
        """
    )
    yocto = load_yocto(
        _write(tmp_path, "image.manifest", IMAGE_MANIFEST),
        _write(tmp_path, "license.manifest", LICENSE_MANIFEST),
    )
    doc = json.loads(make_sbom(components_manifest=manifest, components=yocto))
    components = _by_name(doc)

    assert len(doc["components"]) == 3
    zlib = components["libz1"]
    assert zlib["supplier"] == {"name": "Jean-loup Gailly and Mark Adler"}  # from the manifest
    assert zlib["cpe"] == "cpe:2.3:a:*:zlib:1.2.11:*:*:*:*:*:*:*"  # from Yocto
    assert _props(zlib)["pumpguard:support-level"] == "supported"
    assert _props(zlib)["cdx:lifecycle:milestone:endOfSupport"] == "2030-01-01"


def test_authors_are_recorded(build: Callable[..., dict[str, Any]]) -> None:
    doc = build(authors=["Acme firmware team"])
    assert doc["metadata"]["authors"] == [{"name": "Acme firmware team"}]


def test_repeated_components_are_refused_by_the_schema(make_sbom: Callable[..., bytes]) -> None:
    specs = [ComponentSpec(name="a", version="1"), ComponentSpec(name="b", version="2")]
    doc = json.loads(make_sbom(components=specs))
    doc["components"].append(dict(doc["components"][0]))
    with pytest.raises(SbomValidationError, match="repeated; the items must be unique"):
        validate_sbom(json.dumps(doc).encode())


@pytest.mark.parametrize(
    ("items", "unique"),
    [
        ([1, 1.0], False),
        ([True, 1], True),
        ([{"a": 1, "b": 2}, {"b": 2, "a": 1}], False),
        ([[1, 2], [2, 1]], True),
        (["x", "y"], True),
    ],
)
def test_unique_items_follows_json_schema_equality(items: list[Any], unique: bool) -> None:
    from jsonschema.validators import Draft7Validator

    from sbom.validation import _unique_items

    validator = Draft7Validator({})
    assert (not list(_unique_items(validator, True, items, {}))) is unique
