"""Components of a Yocto image: its image manifest and its license manifest.

``IMAGE.manifest`` (``deploy/images/MACHINE/``) lists one installed package a
line: ``<package> <arch> <version>``. ``license.manifest``
(``deploy/licenses/IMAGE/``) has a paragraph per package with ``PACKAGE NAME``,
``PACKAGE VERSION``, ``RECIPE NAME`` and ``LICENSE``. Either or both may be
given; from both, each package gets its recipe and licenses.

Yocto does not state suppliers, support levels or end-of-support dates, so
those stay unknown. Each package gets the CPE Yocto's own ``cve-check`` uses,
``cpe:2.3:a:*:RECIPE:VERSION:...`` (any vendor; the version without Yocto's
``-rN`` package revision), so NVD advisories can match it; its ``purl`` is
``pkg:generic/PACKAGE@VERSION?arch=ARCH``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from packageurl import PackageURL

from pumpguard.fsutil import FileTooLargeError, read_capped
from sbom.errors import SbomInputError
from sbom.manifest import ComponentSpec, component_from_fields

__all__ = ["ARCH_PROPERTY", "RECIPE_PROPERTY", "load_yocto"]

#: The Yocto recipe a package was built from.
RECIPE_PROPERTY = "pumpguard:yocto:recipe"
#: The package architecture the image manifest names.
ARCH_PROPERTY = "pumpguard:yocto:arch"

_MAX_BYTES = 64 << 20
_LICENSE_TOKEN_RE = re.compile(r"[&|()]|[^\s&|()]+")
_REVISION_RE = re.compile(r"-r\d+(?:\.\d+)*$")
# CPE 2.3 formatted strings escape every character but these with a backslash.
_CPE_SPECIAL_RE = re.compile(r"([^A-Za-z0-9._-])")


def _read_lines(path: Path) -> list[str]:
    try:
        data = read_capped(path, _MAX_BYTES)
    except FileTooLargeError as e:
        raise SbomInputError(str(e)) from e
    except OSError as e:
        raise SbomInputError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise SbomInputError(f"{path}: not UTF-8 text") from e


def _image_manifest(path: Path) -> Iterator[tuple[int, str, str, str]]:
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3:
            raise SbomInputError(
                f"{path}: line {number}: expected '<package> <arch> <version>', got {line!r}"
            )
        yield number, parts[0], parts[1], parts[2]


def _license_manifest(path: Path) -> dict[str, tuple[int, dict[str, str]]]:
    packages: dict[str, tuple[int, dict[str, str]]] = {}
    paragraph: dict[str, str] = {}
    start = 0
    for number, line in enumerate([*_read_lines(path), ""], start=1):
        if not line.strip():
            if paragraph:
                name = paragraph.get("PACKAGE NAME")
                if not name:
                    raise SbomInputError(f"{path}: line {start}: paragraph has no PACKAGE NAME")
                packages[name] = (start, paragraph)
            paragraph = {}
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise SbomInputError(f"{path}: line {number}: expected 'KEY: value', got {line!r}")
        if not paragraph:
            start = number
        paragraph[key.strip().upper()] = value.strip()
    return packages


def _spdx(license_text: str) -> list[str]:
    """Yocto's LICENSE as an SPDX expression.

    Yocto writes ``GPL-2.0-only & bzip2-1.0.4 | MIT``; SPDX says ``AND`` and
    ``OR``. A name that is not an SPDX id becomes ``LicenseRef-NAME``, as
    Yocto's own SPDX output (create-spdx) writes it.
    """
    from cyclonedx.spdx import fixup_id

    tokens = _LICENSE_TOKEN_RE.findall(license_text)
    words: list[str] = []
    operators = {"&": "AND", "|": "OR", "(": "(", ")": ")"}
    for token in tokens:
        if token in operators:
            words.append(operators[token])
        elif token.upper() in ("AND", "OR", "WITH"):
            words.append(token.upper())
        else:
            words.append(fixup_id(token) or "LicenseRef-" + re.sub(r"[^A-Za-z0-9.-]", "-", token))
    expression = " ".join(words).replace("( ", "(").replace(" )", ")")
    return [expression] if expression else []


def load_yocto(
    image_manifest: Path | None = None, license_manifest: Path | None = None
) -> list[ComponentSpec]:
    """Read a Yocto image's packages.

    Args:
        image_manifest: ``IMAGE.manifest``.
        license_manifest: ``license.manifest``.

    Returns:
        One component per package, in file order (the image manifest's if
        given). A license Yocto writes that is not an SPDX expression is left
        out (and so stays unknown) rather than guessed at.

    Raises:
        SbomInputError: A file cannot be read or a line is malformed; the
            message names the file and line.
    """
    licenses = _license_manifest(license_manifest) if license_manifest else {}
    entries: list[tuple[Path, int, str, str | None, str]] = []
    if image_manifest is not None:
        entries = [
            (image_manifest, n, name, arch, v)
            for n, name, arch, v in _image_manifest(image_manifest)
        ]
    elif license_manifest is not None:
        entries = [
            (license_manifest, n, name, None, fields.get("PACKAGE VERSION", ""))
            for name, (n, fields) in licenses.items()
        ]
    else:
        raise SbomInputError("a Yocto input needs an image manifest or a license manifest")
    return [
        _component(path, n, name, arch, version, licenses)
        for path, n, name, arch, version in entries
    ]


def _component(
    path: Path,
    line: int,
    name: str,
    arch: str | None,
    version: str,
    licenses: dict[str, tuple[int, dict[str, str]]],
) -> ComponentSpec:
    _, fields = licenses.get(name, (0, {}))
    recipe = fields.get("RECIPE NAME") or None
    upstream = _REVISION_RE.sub("", version.partition(":")[2] or version)
    qualifiers = {"arch": arch} if arch else None
    raw: dict[str, object] = {
        "name": name,
        "version": version,
        "purl": PackageURL(
            type="generic", name=name, version=version, qualifiers=qualifiers
        ).to_string(),
    }
    product = _CPE_SPECIAL_RE.sub(r"\\\1", recipe or name)
    cpe_version = _CPE_SPECIAL_RE.sub(r"\\\1", upstream)
    if product and cpe_version:
        raw["cpe"] = f"cpe:2.3:a:*:{product}:{cpe_version}:*:*:*:*:*:*:*"
    license_text = fields.get("LICENSE", "")
    spdx = _spdx(license_text)
    properties: list[tuple[str, str]] = []
    if recipe:
        properties.append((RECIPE_PROPERTY, recipe))
    if arch:
        properties.append((ARCH_PROPERTY, arch))
    try:
        return component_from_fields(
            {**raw, "licenses": spdx}, path, f"line {line}", tuple(properties)
        )
    except SbomInputError:
        if not spdx:
            raise
    # Not an SPDX expression (e.g. an old "GPLv2"): leave the license unknown.
    return component_from_fields(raw, path, f"line {line}", tuple(properties))
