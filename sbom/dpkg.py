"""Components of a Debian-based root file system: its dpkg status file.

``/var/lib/dpkg/status`` has one paragraph per package (``Package``,
``Status``, ``Version``, ``Architecture``, ``Source``, ``Maintainer``,
``Depends``, ``Description`` ...). Only packages whose status is
``install ok installed`` are components. Each gets the purl syft and Debian
tooling write, ``pkg:deb/DISTRO/NAME@VERSION?arch=ARCH&upstream=SOURCE`` (the
source package is what Debian advisories name), its maintainer as supplier,
and a dependency on each installed package its ``Depends`` and ``Pre-Depends``
name. dpkg states no licenses, support levels or end-of-support dates; they
stay unknown.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from packageurl import PackageURL

from pumpguard.fsutil import FileTooLargeError, read_capped
from sbom.errors import SbomInputError
from sbom.manifest import ComponentSpec, component_from_fields

__all__ = ["load_dpkg_status"]

_MAX_BYTES = 256 << 20
_DISTRO_RE = re.compile(r"^[a-z][a-z0-9.+-]{0,63}$")
_SOURCE_RE = re.compile(r"^(\S+)(?:\s+\((\S+)\))?$")


def _paragraphs(path: Path) -> list[tuple[int, dict[str, str]]]:
    try:
        data = read_capped(path, _MAX_BYTES)
    except FileTooLargeError as e:
        raise SbomInputError(str(e)) from e
    except OSError as e:
        raise SbomInputError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise SbomInputError(f"{path}: not UTF-8 text") from e
    result: list[tuple[int, dict[str, str]]] = []
    fields: dict[str, str] = {}
    start = 0
    key = None
    for number, line in enumerate([*lines, ""], start=1):
        if not line.strip():
            if fields:
                result.append((start, fields))
            fields, key = {}, None
            continue
        if line[0] in " \t":  # continuation of a multi-line field
            if key is None:
                raise SbomInputError(f"{path}: line {number}: continuation line without a field")
            fields[key] += "\n" + line.strip()
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or " " in name:
            raise SbomInputError(f"{path}: line {number}: expected 'Field: value', got {line!r}")
        if not fields:
            start = number
        key = name.strip().lower()
        if key in fields:
            raise SbomInputError(f"{path}: line {number}: field {name!r} is repeated")
        fields[key] = value.strip()
    return result


def _depends(text: str) -> list[list[str]]:
    # "libc6 (>= 2.34), libfoo1 | libbar1" -> [["libc6"], ["libfoo1", "libbar1"]]
    groups: list[list[str]] = []
    for group in text.split(","):
        names = [alt.strip().split()[0].split(":")[0] for alt in group.split("|") if alt.strip()]
        if names:
            groups.append(names)
    return groups


def load_dpkg_status(path: Path, distro: str) -> list[ComponentSpec]:
    """Read the installed packages of a dpkg status file.

    Args:
        path: The status file (``/var/lib/dpkg/status`` of the image).
        distro: The distribution, the purl namespace (``debian``, ``ubuntu``);
            the status file does not say which.

    Returns:
        One component per installed package, in file order.

    Raises:
        SbomInputError: The file cannot be read or a paragraph is malformed;
            the message names the file, the line and the package.
    """
    if not _DISTRO_RE.match(distro):
        raise SbomInputError(f"distribution {distro!r} must be a lower-case name such as debian")
    installed: list[tuple[int, dict[str, str]]] = []
    for start, fields in _paragraphs(path):
        if "package" not in fields:
            raise SbomInputError(f"{path}: line {start}: paragraph has no Package field")
        status = fields.get("status", "").split()
        if status[-1:] != ["installed"]:
            continue  # removed, half-configured, config-files only: not in the image
        if not fields.get("version"):
            raise SbomInputError(
                f"{path}: line {start}: package {fields['package']!r} has no Version"
            )
        installed.append((start, fields))
    versions = {fields["package"]: fields["version"] for _, fields in installed}
    return [_component(path, start, fields, distro, versions) for start, fields in installed]


def _component(
    path: Path, line: int, fields: dict[str, str], distro: str, versions: dict[str, str]
) -> ComponentSpec:
    name, version = fields["package"], fields["version"]
    qualifiers: dict[str, str] = {}
    if fields.get("architecture"):
        qualifiers["arch"] = fields["architecture"]
    source = _SOURCE_RE.match(fields.get("source", ""))
    if source and source.group(1) != name:
        qualifiers["upstream"] = source.group(1)
    raw: dict[str, object] = {
        "name": name,
        "version": version,
        "purl": PackageURL(
            type="deb", namespace=distro, name=name, version=version, qualifiers=qualifiers or None
        ).to_string(),
    }
    if fields.get("maintainer"):
        raw["supplier"] = fields["maintainer"]
    description = fields.get("description", "").split("\n", 1)[0].strip()
    if description:
        raw["description"] = description
    spec = component_from_fields(raw, path, f"line {line}")
    depends: list[str] = []
    for key in ("pre-depends", "depends"):
        for alternatives in _depends(fields.get(key, "")):
            # The first alternative that is installed is the one in the image.
            present = next((n for n in alternatives if n in versions and n != name), None)
            if present is not None:
                ref = f"component:{present}@{versions[present]}"
                if ref not in depends:
                    depends.append(ref)
    return dataclasses.replace(spec, depends_on=tuple(depends))
