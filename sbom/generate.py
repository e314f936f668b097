"""Generation of the CycloneDX 1.6 SBOM of a firmware image.

The SBOM's ``metadata.component`` is the firmware itself, carrying the image's
sha256 so the SBOM is bound to exactly one image (DESIGN.md, Release contract);
``components`` are those of the firmware team's component manifest.
"""

from __future__ import annotations

import datetime
import json
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cyclonedx.model import HashAlgorithm, HashType, Property, XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.contact import OrganizationalContact, OrganizationalEntity
from cyclonedx.model.license import DisjunctiveLicense, License, LicenseExpression
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.spdx import is_supported_id
from packageurl import PackageURL

import pumpguard
from pumpguard.errors import ReleaseContractError
from pumpguard.release import SemVer, validate_hardware_id, validate_product
from sbom import properties as prop
from sbom.binding import bound_firmware_sha256
from sbom.errors import SbomError, SbomValidationError
from sbom.inputs import combine
from sbom.manifest import ComponentManifest, ComponentSpec, OrganizationSpec, load_manifest
from sbom.validation import validate_sbom

__all__ = ["build_firmware_sbom", "firmware_bom_ref"]

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# The keys a reader looks for first go first; the rest keep the library's order.
_HEAD_KEYS = ("$schema", "bomFormat", "specVersion", "serialNumber", "version")


def firmware_bom_ref(product: str, version: str) -> str:
    """The bom-ref of a release's firmware component, ``firmware:PRODUCT@VERSION``."""
    return f"firmware:{product}@{version}"


def build_firmware_sbom(
    *,
    product: str,
    version: str,
    firmware_name: str,
    firmware_sha256: str,
    firmware_size: int,
    hardware_ids: Sequence[str] = (),
    supplier: str | None = None,
    components_manifest: Path | None = None,
    components: Sequence[ComponentSpec] = (),
    authors: Sequence[str] = (),
    timestamp: datetime.datetime | None = None,
    serial_number: uuid.UUID | None = None,
) -> bytes:
    """Build the CycloneDX 1.6 JSON SBOM of a firmware image.

    The firmware is ``metadata.component``: type ``firmware``, named after the
    product, with the image's SHA-256 hash and the properties
    ``pumpguard:firmware:name``, ``pumpguard:firmware:size`` and one
    ``pumpguard:hardware-id`` per hardware id. The manifest's components become
    ``components``; the firmware depends on every component no other component
    depends on, and each component on its ``depends_on``. The document is
    checked against the strict CycloneDX 1.6 schema before it is returned.

    Args:
        product: Product line (the release contract's product name).
        version: Semantic version of the release.
        firmware_name: File name of the firmware image.
        firmware_sha256: sha256 of the image, 64 lower-case hex digits.
        firmware_size: Size of the image in bytes.
        hardware_ids: Pump hardware revisions the image may run on.
        supplier: Name of the firmware's supplier. ``None`` uses the manifest's
            ``[supplier]``, if any; otherwise the supplier is left out, never
            made up.
        components_manifest: TOML component manifest (docs/sbom-manifest.md).
        components: Components from other inputs (:mod:`sbom.inputs`: Yocto
            manifests, dpkg status files, merged SBOMs), after the manifest's.
            A component of the same name and version as an earlier one is
            merged into it (:func:`sbom.inputs.combine`).
        authors: Names of the people or teams who wrote the SBOM's data
            (``metadata.authors``, NTIA's "author of SBOM data").
        timestamp: Time of the SBOM, timezone-aware; default now. Fix it (and
            ``serial_number``) to generate byte-identical SBOMs.
        serial_number: The SBOM's serial number; default a random UUID.

    Returns:
        The SBOM as UTF-8 JSON bytes.

    Raises:
        SbomError: An argument is invalid.
        ComponentManifestError: The manifest is invalid.
        SbomValidationError: The generated document failed validation (a bug).
    """
    _check_release(product, version)
    _check_firmware(firmware_name, firmware_sha256, firmware_size)
    hardware = _check_hardware_ids(hardware_ids)
    when = _check_timestamp(timestamp)
    if serial_number is not None and not isinstance(serial_number, uuid.UUID):
        raise SbomError("serial_number must be a uuid.UUID")

    manifest = (
        load_manifest(components_manifest)
        if components_manifest is not None
        else ComponentManifest(path=Path(), components=())
    )
    firmware_supplier = _firmware_supplier(supplier, manifest)
    specs = combine([manifest.components, tuple(components)])
    author_names = _check_authors(authors)

    firmware = Component(
        type=ComponentType.FIRMWARE,
        name=product,
        version=version,
        bom_ref=firmware_bom_ref(product, version),
        supplier=_organization(firmware_supplier),
        manufacturer=_organization(manifest.manufacturer),
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=firmware_sha256)],
        properties=[
            Property(name=prop.FIRMWARE_NAME, value=firmware_name),
            Property(name=prop.FIRMWARE_SIZE, value=str(firmware_size)),
            *(Property(name=prop.HARDWARE_ID, value=h) for h in hardware),
        ],
    )
    by_ref = {spec.bom_ref: _component(spec) for spec in specs}
    bom = Bom(
        serial_number=serial_number or uuid.uuid4(),
        metadata=BomMetaData(
            timestamp=when,
            tools=ToolRepository(components=[_pumpguard_tool()]),
            component=firmware,
            supplier=_organization(firmware_supplier),
            manufacturer=_organization(manifest.manufacturer),
            authors=[OrganizationalContact(name=name) for name in author_names],
        ),
        components=by_ref.values(),
    )
    for spec in specs:
        bom.register_dependency(by_ref[spec.bom_ref], [by_ref[ref] for ref in spec.depends_on])
    bom.register_dependency(firmware, [by_ref[ref] for ref in _direct_dependencies(specs)])

    document = _serialize(bom)
    validate_sbom(document)
    # Guard against the library silently dropping data.
    if bound_firmware_sha256(document) != firmware_sha256:
        raise SbomValidationError("generated SBOM does not carry the firmware's sha256")
    if len(json.loads(document).get("components", [])) != len(specs):
        raise SbomValidationError("generated SBOM lost components of the manifest")
    return document


def _check_authors(authors: Sequence[str]) -> tuple[str, ...]:
    if isinstance(authors, str):
        raise SbomError("authors must be a sequence of names, not one string")
    for name in authors:
        if not isinstance(name, str) or not name.strip() or name != name.strip() or "\n" in name:
            raise SbomError(f"author {name!r} must be a non-empty one-line name")
    return tuple(authors)


def _check_release(product: str, version: str) -> None:
    try:
        validate_product(product)
        SemVer.parse(version)
    except ReleaseContractError as e:
        raise SbomError(str(e)) from e


def _check_firmware(name: str, sha256: str, size: int) -> None:
    if (
        not isinstance(name, str)
        or not name.strip()
        or name in (".", "..")
        or any(ch in name for ch in "/\\\0\n\r")
    ):
        raise SbomError(f"firmware name {name!r} must be a plain file name")
    if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
        raise SbomError("firmware sha256 must be 64 lower-case hex digits")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise SbomError(f"firmware size {size!r} must be a whole number of bytes")


def _check_hardware_ids(hardware_ids: Sequence[str]) -> tuple[str, ...]:
    if isinstance(hardware_ids, str):
        raise SbomError("hardware_ids must be a sequence of ids, not one string")
    result = tuple(hardware_ids)
    try:
        for hardware_id in result:
            validate_hardware_id(hardware_id)
    except ReleaseContractError as e:
        raise SbomError(str(e)) from e
    if len(set(result)) != len(result):
        raise SbomError("hardware ids are repeated")
    return result


def _check_timestamp(timestamp: datetime.datetime | None) -> datetime.datetime:
    if timestamp is None:
        return datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    if not isinstance(timestamp, datetime.datetime) or timestamp.utcoffset() is None:
        raise SbomError("timestamp must be a timezone-aware datetime")
    return timestamp.astimezone(datetime.UTC)


def _firmware_supplier(
    supplier: str | None, manifest: ComponentManifest
) -> OrganizationSpec | None:
    if supplier is None:
        return manifest.supplier
    if not isinstance(supplier, str) or not supplier.strip() or supplier != supplier.strip():
        raise SbomError(f"supplier {supplier!r} must be a non-empty name")
    if manifest.supplier is None:
        return OrganizationSpec(name=supplier)
    if manifest.supplier.name != supplier:
        raise SbomError(
            f"supplier {supplier!r} contradicts {manifest.supplier.name!r} "
            f"in the [supplier] table of {manifest.path}"
        )
    return manifest.supplier


def _organization(spec: OrganizationSpec | None) -> OrganizationalEntity | None:
    if spec is None:
        return None
    return OrganizationalEntity(name=spec.name, urls=[XsUri(spec.url)] if spec.url else None)


def _pumpguard_tool() -> Component:
    return Component(
        type=ComponentType.APPLICATION,
        name="pumpguard",
        version=pumpguard.__version__,
        description="Secure firmware updates for networked infusion pumps",
    )


def _licenses(entries: tuple[str, ...]) -> list[License]:
    if len(entries) == 1 and not is_supported_id(entries[0]):
        return [LicenseExpression(entries[0])]
    return [
        DisjunctiveLicense(id=e) if is_supported_id(e) else DisjunctiveLicense(name=e)
        for e in entries
    ]


def _component(spec: ComponentSpec) -> Component:
    end_of_support = spec.end_of_support.isoformat() if spec.end_of_support else prop.UNKNOWN
    return Component(
        type=ComponentType(spec.type),
        name=spec.name,
        version=spec.version,
        bom_ref=spec.bom_ref,
        supplier=OrganizationalEntity(name=spec.supplier) if spec.supplier else None,
        purl=PackageURL.from_string(spec.purl) if spec.purl else None,
        cpe=spec.cpe,
        description=spec.description,
        licenses=_licenses(spec.licenses),
        hashes=[HashType(alg=HashAlgorithm(alg), content=hex_) for alg, hex_ in spec.hashes],
        properties=[
            Property(name=prop.SUPPORT_LEVEL, value=spec.support_level),
            Property(name=prop.END_OF_SUPPORT, value=end_of_support),
            *(Property(name=name, value=value) for name, value in spec.properties),
        ],
    )


def _direct_dependencies(specs: Sequence[ComponentSpec]) -> list[str]:
    """bom-refs the firmware depends on directly.

    Those are the components no other component depends on, plus, for a
    dependency cycle no such component leads to, its first component in
    manifest order, so that every component is reachable from the firmware.
    """
    edges = {spec.bom_ref: spec.depends_on for spec in specs}
    depended_on = {ref for refs in edges.values() for ref in refs}
    direct = [spec.bom_ref for spec in specs if spec.bom_ref not in depended_on]
    reached = _closure(direct, edges)
    for spec in specs:
        if spec.bom_ref not in reached:
            direct.append(spec.bom_ref)
            reached |= _closure([spec.bom_ref], edges)
    return direct


def _closure(starts: list[str], edges: dict[str, tuple[str, ...]]) -> set[str]:
    reached: set[str] = set()
    stack = list(starts)
    while stack:
        ref = stack.pop()
        if ref not in reached:
            reached.add(ref)
            stack.extend(edges[ref])
    return reached


def _serialize(bom: Bom) -> bytes:
    doc: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string())
    ordered = {key: doc[key] for key in _HEAD_KEYS if key in doc}
    ordered.update((key, value) for key, value in doc.items() if key not in ordered)
    return (json.dumps(ordered, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
