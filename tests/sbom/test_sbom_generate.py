"""Generating the CycloneDX 1.6 SBOM of a firmware image."""

from __future__ import annotations

import datetime
import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sbom import SbomError, bound_firmware_sha256, validate_sbom

Build = Callable[..., dict[str, Any]]
MakeSbom = Callable[..., bytes]
WriteManifest = Callable[[str], Path]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sbom-manifest.md"


def properties(component: dict[str, Any], name: str) -> list[str]:
    """Values of the properties called ``name`` of a CycloneDX component."""
    return [p["value"] for p in component.get("properties", []) if p["name"] == name]


def component_named(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """The component called ``name`` of an SBOM."""
    found: list[dict[str, Any]] = [c for c in doc.get("components", []) if c["name"] == name]
    assert len(found) == 1, f"{len(found)} components named {name!r}"
    return found[0]


def depends_on(doc: dict[str, Any], ref: str) -> set[str]:
    """The bom-refs ``ref`` depends on, per the SBOM's dependency graph."""
    (entry,) = [d for d in doc["dependencies"] if d["ref"] == ref]
    return set(entry.get("dependsOn", []))


@pytest.mark.parametrize("with_manifest", [False, True], ids=["firmware-only", "manifest"])
def test_generated_sbom_validates_against_strict_cyclonedx_1_6_schema(
    make_sbom: MakeSbom, example_manifest: Path, with_manifest: bool
) -> None:
    document = make_sbom(components_manifest=example_manifest if with_manifest else None)

    validate_sbom(document)  # raises if invalid
    doc = json.loads(document)
    assert doc["bomFormat"] == "CycloneDX"
    assert doc["specVersion"] == "1.6"
    assert len(doc.get("components", [])) == (3 if with_manifest else 0)


def test_firmware_component_carries_the_input_hash_size_name_and_hardware_ids(
    build: Build, firmware_sha256: str
) -> None:
    doc = build(hardware_ids=["rev-c", "rev-d"], firmware_size=123456)
    firmware = doc["metadata"]["component"]

    assert firmware["type"] == "firmware"
    assert firmware["name"] == "sigma-spectrum"
    assert firmware["version"] == "8.1.0"
    assert firmware["bom-ref"] == "firmware:sigma-spectrum@8.1.0"
    assert firmware["hashes"] == [{"alg": "SHA-256", "content": firmware_sha256}]
    assert properties(firmware, "pumpguard:firmware:size") == ["123456"]
    assert properties(firmware, "pumpguard:firmware:name") == ["firmware.img"]
    assert sorted(properties(firmware, "pumpguard:hardware-id")) == ["rev-c", "rev-d"]


@pytest.mark.parametrize("with_manifest", [False, True], ids=["firmware-only", "manifest"])
def test_bound_sha256_of_generated_sbom_is_the_input_sha256(
    make_sbom: MakeSbom, example_manifest: Path, with_manifest: bool
) -> None:
    sha256 = "5e" * 32
    document = make_sbom(
        firmware_sha256=sha256, components_manifest=example_manifest if with_manifest else None
    )
    assert bound_firmware_sha256(document) == sha256


def test_metadata_names_pumpguard_as_tool_and_uses_the_given_time_and_serial(
    build: Build,
) -> None:
    serial = uuid.UUID("0c1d0e4c-8f3c-4e7e-9a53-7d2b64b3f3a1")
    doc = build(
        timestamp=datetime.datetime(2024, 12, 31, 23, 59, 58, tzinfo=datetime.UTC),
        serial_number=serial,
    )
    tools = doc["metadata"]["tools"]["components"]
    assert [t["name"] for t in tools] == ["pumpguard"]
    assert tools[0]["version"]
    assert doc["metadata"]["timestamp"] == "2024-12-31T23:59:58+00:00"
    assert doc["serialNumber"] == f"urn:uuid:{serial}"


def test_fixed_timestamp_and_serial_make_the_output_byte_identical(
    make_sbom: MakeSbom, example_manifest: Path
) -> None:
    first = make_sbom(components_manifest=example_manifest)
    assert make_sbom(components_manifest=example_manifest) == first


def test_defaults_are_a_fresh_serial_and_the_current_time(make_sbom: MakeSbom) -> None:
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    first = json.loads(make_sbom(timestamp=None, serial_number=None))
    second = json.loads(make_sbom(timestamp=None, serial_number=None))
    after = datetime.datetime.now(datetime.UTC)

    assert first["serialNumber"] != second["serialNumber"]
    assert re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", first["serialNumber"])
    stamped = datetime.datetime.fromisoformat(first["metadata"]["timestamp"])
    assert before <= stamped <= after


def test_timestamp_in_another_timezone_is_written_in_utc(build: Build) -> None:
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    doc = build(timestamp=datetime.datetime(2025, 3, 1, 14, 0, tzinfo=plus_two))
    assert doc["metadata"]["timestamp"] == "2025-03-01T12:00:00+00:00"


def test_manifest_fields_become_component_fields(build: Build, example_manifest: Path) -> None:
    doc = build(components_manifest=example_manifest)

    zephyr = component_named(doc, "zephyr")
    assert zephyr["bom-ref"] == "component:zephyr@3.7.0"
    assert zephyr["type"] == "operating-system"
    assert zephyr["supplier"] == {"name": "Zephyr Project"}
    assert zephyr["purl"] == "pkg:github/zephyrproject-rtos/zephyr@v3.7.0"
    assert zephyr["cpe"] == "cpe:2.3:o:zephyrproject:zephyr:3.7.0:*:*:*:*:*:*:*"
    assert zephyr["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    assert properties(zephyr, "pumpguard:support-level") == ["supported"]
    assert properties(zephyr, "cdx:lifecycle:milestone:endOfSupport") == ["2029-07-31"]

    mbedtls = component_named(doc, "mbedtls")
    assert mbedtls["type"] == "library"
    assert mbedtls["licenses"] == [{"expression": "Apache-2.0 OR GPL-2.0-or-later"}]
    assert mbedtls["hashes"] == [
        {
            "alg": "SHA-256",
            "content": "8b54fb9bcf4d5a7078028e0520acddefb7900b3e66fec7f7175bb5b7d85ccdca",
        }
    ]
    assert component_named(doc, "infusion-control")["licenses"] == [
        {"expression": "LicenseRef-acme-proprietary"}
    ]


def test_unknown_support_facts_are_recorded_as_unknown_not_invented(
    build: Build, write_manifest: WriteManifest
) -> None:
    manifest = write_manifest(
        """
        [[component]]
        name = "littlefs"
        version = "2.9.3"

        [[component]]
        name = "lwip"
        version = "2.2.0"
        end_of_support = "unknown"
        support_level = "unknown"
        """
    )
    doc = build(components_manifest=manifest)

    for name in ("littlefs", "lwip"):
        component = component_named(doc, name)
        assert properties(component, "pumpguard:support-level") == ["unknown"]
        assert properties(component, "cdx:lifecycle:milestone:endOfSupport") == ["unknown"]
        for invented in ("supplier", "licenses", "purl", "cpe", "hashes", "description"):
            assert invented not in component


def test_missing_supplier_is_left_absent_for_the_firmware_too(build: Build) -> None:
    doc = build()
    assert "supplier" not in doc["metadata"]
    assert "supplier" not in doc["metadata"]["component"]
    assert "manufacturer" not in doc["metadata"]["component"]


@pytest.mark.parametrize(
    ("argument", "manifest", "expected"),
    [
        ("Acme", "", {"name": "Acme"}),
        (
            None,
            '[supplier]\nname = "Acme"\nurl = "https://acme.example"\n',
            {"name": "Acme", "url": ["https://acme.example"]},
        ),
        (
            "Acme",
            '[supplier]\nname = "Acme"\nurl = "https://acme.example"\n',
            {"name": "Acme", "url": ["https://acme.example"]},
        ),
    ],
    ids=["argument", "manifest", "both-agree"],
)
def test_firmware_supplier_comes_from_argument_or_manifest(
    build: Build,
    write_manifest: WriteManifest,
    argument: str | None,
    manifest: str,
    expected: dict[str, Any],
) -> None:
    doc = build(supplier=argument, components_manifest=write_manifest(manifest))
    assert doc["metadata"]["supplier"] == expected
    assert doc["metadata"]["component"]["supplier"] == expected


def test_supplier_argument_contradicting_the_manifest_is_refused(
    make_sbom: MakeSbom, write_manifest: WriteManifest
) -> None:
    manifest = write_manifest('[supplier]\nname = "Acme"\n')
    with pytest.raises(SbomError, match=r"supplier 'Other' contradicts 'Acme'"):
        make_sbom(supplier="Other", components_manifest=manifest)


def test_manifest_manufacturer_is_recorded(build: Build, write_manifest: WriteManifest) -> None:
    doc = build(components_manifest=write_manifest('[manufacturer]\nname = "Acme Fab"\n'))
    assert doc["metadata"]["manufacturer"] == {"name": "Acme Fab"}
    assert doc["metadata"]["component"]["manufacturer"] == {"name": "Acme Fab"}


def test_firmware_depends_on_top_level_components_and_components_on_depends_on(
    build: Build, example_manifest: Path
) -> None:
    doc = build(components_manifest=example_manifest)

    assert depends_on(doc, "firmware:sigma-spectrum@8.1.0") == {
        "component:zephyr@3.7.0",
        "component:infusion-control@8.1.0",
    }
    assert depends_on(doc, "component:zephyr@3.7.0") == {"component:mbedtls@3.6.2"}
    assert depends_on(doc, "component:mbedtls@3.6.2") == set()
    assert depends_on(doc, "component:infusion-control@8.1.0") == set()


def test_components_in_a_dependency_cycle_stay_reachable_from_the_firmware(
    build: Build, write_manifest: WriteManifest
) -> None:
    manifest = write_manifest(
        """
        [[component]]
        name = "app"
        version = "1.0.0"

        [[component]]
        name = "a"
        version = "1"
        depends_on = ["b"]

        [[component]]
        name = "b"
        version = "1"
        depends_on = ["a"]
        """
    )
    doc = build(components_manifest=manifest)

    assert depends_on(doc, "firmware:sigma-spectrum@8.1.0") == {
        "component:app@1.0.0",
        "component:a@1",
    }
    assert depends_on(doc, "component:a@1") == {"component:b@1"}
    assert depends_on(doc, "component:b@1") == {"component:a@1"}


def test_without_manifest_the_firmware_has_no_dependencies(build: Build) -> None:
    doc = build()
    assert "components" not in doc
    assert depends_on(doc, "firmware:sigma-spectrum@8.1.0") == set()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"product": "Sigma"}, "product 'Sigma'"),
        ({"product": "root"}, "reserved TUF role"),
        ({"version": "8.1"}, "not a semantic version"),
        ({"firmware_name": "dir/firmware.img"}, "plain file name"),
        ({"firmware_name": ""}, "plain file name"),
        ({"firmware_sha256": "9F" * 32}, "64 lower-case hex"),
        ({"firmware_sha256": "9f" * 31}, "64 lower-case hex"),
        ({"firmware_sha256": "9f" * 32 + "\n"}, "64 lower-case hex"),
        ({"firmware_size": -1}, "firmware size"),
        ({"firmware_size": True}, "firmware size"),
        ({"hardware_ids": ["rev c"]}, "hardware id 'rev c'"),
        ({"hardware_ids": ["rev-c", "rev-c"]}, "repeated"),
        ({"hardware_ids": "rev-c"}, "not one string"),
        ({"supplier": ""}, "non-empty name"),
        ({"timestamp": datetime.datetime(2025, 3, 1)}, "timezone-aware"),
        ({"serial_number": "3e671687-395b-41f5-a30f-a58921a69b79"}, "uuid.UUID"),
    ],
    ids=lambda v: v if isinstance(v, str) else next(iter(v)),
)
def test_invalid_arguments_are_refused(
    make_sbom: MakeSbom, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(SbomError, match=re.escape(message)):
        make_sbom(**overrides)


def test_the_example_manifest_of_the_docs_builds_a_valid_sbom(
    make_sbom: MakeSbom, tmp_path: Path
) -> None:
    text = DOCS.read_text(encoding="utf-8")
    (example,) = re.findall(r"```toml\n(.*?)```", text, flags=re.DOTALL)
    manifest = tmp_path / "components.toml"
    manifest.write_text(example, encoding="utf-8")

    document = make_sbom(components_manifest=manifest)

    validate_sbom(document)
    doc = json.loads(document)
    assert len(doc["components"]) == 4
    assert "supplier" not in component_named(doc, "littlefs")


def test_license_refs_next_to_spdx_ids_are_written_as_license_names(
    build: Build, write_manifest: WriteManifest
) -> None:
    manifest = write_manifest(
        '[[component]]\nname = "x"\nversion = "1"\nlicenses = ["MIT", "LicenseRef-acme"]\n'
    )
    doc = build(components_manifest=manifest)
    assert component_named(doc, "x")["licenses"] == [
        {"license": {"id": "MIT"}},
        {"license": {"name": "LicenseRef-acme"}},
    ]
