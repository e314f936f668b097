"""Components of an existing CycloneDX SBOM, to merge into a firmware's SBOM.

An application built into the firmware may come with its own SBOM. Its
``metadata.component`` (the application) and all its components (nested ones
flattened) become components of the firmware's SBOM, with their dependencies.
CycloneDX 1.4, 1.5 and 1.6 JSON are accepted, each checked against its own
strict schema first.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pumpguard.fsutil import FileTooLargeError, read_capped
from sbom import properties as prop
from sbom._json import load_strict
from sbom.errors import SbomInputError, SbomValidationError
from sbom.manifest import COMPONENT_TYPES, ComponentSpec, component_from_fields

if TYPE_CHECKING:
    from cyclonedx.validation.json import JsonStrictValidator

__all__ = ["MERGE_SPEC_VERSIONS", "load_cyclonedx"]

#: CycloneDX versions an SBOM to merge may have.
MERGE_SPEC_VERSIONS = ("1.4", "1.5", "1.6")
_MAX_BYTES = 256 << 20
# Properties the generator writes itself from the component's fields.
_OWN_PROPERTIES = {prop.SUPPORT_LEVEL, prop.END_OF_SUPPORT}


@functools.cache
def _validator(version: str) -> JsonStrictValidator:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    return JsonStrictValidator(SchemaVersion.from_version(version))


def load_cyclonedx(path: Path) -> list[ComponentSpec]:
    """Read the components of a CycloneDX JSON SBOM.

    Args:
        path: The SBOM.

    Returns:
        Its ``metadata.component`` (if any) then its components, with
        ``depends_on`` from its ``dependencies``. A component without a
        version gets ``unknown``; a license given by name only (not an SPDX id
        or expression) is left out.

    Raises:
        SbomInputError: Not JSON, not CycloneDX of a supported version, a
            component of an unknown type, or not schema-valid; the message
            names the file and the component.
    """
    try:
        data = read_capped(path, _MAX_BYTES)
    except FileTooLargeError as e:
        raise SbomInputError(str(e)) from e
    except OSError as e:
        raise SbomInputError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        doc = load_strict(data, what=str(path))
    except SbomValidationError as e:
        raise SbomInputError(str(e)) from e
    if not isinstance(doc, dict) or doc.get("bomFormat") != "CycloneDX":
        raise SbomInputError(f'{path}: not a CycloneDX SBOM (bomFormat is not "CycloneDX")')
    spec_version = doc.get("specVersion")
    if spec_version not in MERGE_SPEC_VERSIONS:
        raise SbomInputError(
            f"{path}: CycloneDX specVersion {spec_version!r} is not supported; "
            f"one of {', '.join(MERGE_SPEC_VERSIONS)}"
        )
    raws = list(_all_components(doc))
    for i, raw in enumerate(raws, start=1):
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind not in COMPONENT_TYPES:
            name = raw.get("name") if isinstance(raw, dict) else None
            raise SbomInputError(
                f"{path}: component #{i} ({name!r}): type {kind!r} is not a CycloneDX "
                f"component type; one of {', '.join(COMPONENT_TYPES)}"
            )
    errors = _validator(spec_version).validate_str(json.dumps(doc))
    if errors is not None:
        raise SbomInputError(f"{path}: not valid CycloneDX {spec_version}: {errors.data.message}")
    specs = [_component(raw, path, i) for i, raw in enumerate(raws, start=1)]
    return _with_dependencies(doc, raws, specs)


def _all_components(doc: dict[str, Any]) -> Iterator[Any]:
    metadata = doc.get("metadata")
    if isinstance(metadata, dict) and "component" in metadata:
        yield metadata["component"]

    def walk(components: object) -> Iterator[Any]:
        if isinstance(components, list):
            for raw in components:
                yield raw
                if isinstance(raw, dict):
                    yield from walk(raw.get("components"))

    yield from walk(doc.get("components"))


def _component(raw: dict[str, Any], path: Path, index: int) -> ComponentSpec:
    fields: dict[str, Any] = {"name": raw["name"], "version": raw.get("version") or prop.UNKNOWN}
    fields["type"] = raw["type"]
    supplier = raw.get("supplier", {}).get("name")
    if supplier:
        fields["supplier"] = supplier
    for key in ("purl", "cpe", "description"):
        if raw.get(key):
            fields[key] = raw[key]
    licenses = []
    for entry in raw.get("licenses", []):
        if "expression" in entry:
            licenses.append(entry["expression"])
        elif entry.get("license", {}).get("id"):
            licenses.append(entry["license"]["id"])
    if licenses:
        fields["licenses"] = licenses
    if raw.get("hashes"):
        fields["hashes"] = {h["alg"]: h["content"] for h in raw["hashes"]}
    extra: list[tuple[str, str]] = []
    for p in raw.get("properties", []):
        if p["name"] == prop.SUPPORT_LEVEL:
            fields["support_level"] = p.get("value", prop.UNKNOWN)
        elif p["name"] == prop.END_OF_SUPPORT:
            fields["end_of_support"] = p.get("value", prop.UNKNOWN)
        elif p["name"] not in _OWN_PROPERTIES:
            extra.append((p["name"], p.get("value", "")))
    return component_from_fields(fields, path, f"component #{index}", tuple(extra))


def _with_dependencies(
    doc: dict[str, Any], raws: list[dict[str, Any]], specs: list[ComponentSpec]
) -> list[ComponentSpec]:
    ours = {
        raw["bom-ref"]: spec.bom_ref
        for raw, spec in zip(raws, specs, strict=True)
        if raw.get("bom-ref")
    }
    depends: dict[str, list[str]] = {}
    for entry in doc.get("dependencies", []):
        source = ours.get(entry["ref"])
        if source is None:
            continue
        targets = [ours[r] for r in entry.get("dependsOn", []) if r in ours and ours[r] != source]
        depends.setdefault(source, []).extend(t for t in targets if t not in depends[source])
    return [
        dataclasses.replace(spec, depends_on=tuple(depends.get(spec.bom_ref, ()))) for spec in specs
    ]
