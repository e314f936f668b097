"""The parts of a CycloneDX SBOM that checks, audits and diffs look at.

:func:`load_sbom` validates a document against the strict CycloneDX 1.6 schema
and :func:`read_components` flattens its components (nested ones included) into
:class:`SbomComponent` values. Reading never fills in a missing fact: a
component without a supplier has ``supplier`` ``None``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from packageurl import PackageURL

from sbom import properties as prop
from sbom._json import load_strict
from sbom.errors import SbomValidationError
from sbom.validation import validate_sbom

__all__ = ["SbomComponent", "component_identity", "load_sbom", "read_components"]


@dataclasses.dataclass(frozen=True)
class SbomComponent:
    """One component of an SBOM.

    Attributes:
        bom_ref: Its ``bom-ref``, or ``None``.
        type: CycloneDX component type.
        name: Name.
        version: Version, or ``None``.
        group: Group (namespace), or ``None``.
        supplier: Supplier name (``supplier.name``), or ``None``.
        purl: Package URL, or ``None``.
        cpe: CPE name, or ``None``.
        swid: SWID tag id, or ``None``.
        hashes: ``(algorithm, content)`` pairs, sorted.
        licenses: License ids, names or expressions, sorted.
        properties: ``(name, value)`` pairs in document order.
    """

    bom_ref: str | None
    type: str
    name: str
    version: str | None = None
    group: str | None = None
    supplier: str | None = None
    purl: str | None = None
    cpe: str | None = None
    swid: str | None = None
    hashes: tuple[tuple[str, str], ...] = ()
    licenses: tuple[str, ...] = ()
    properties: tuple[tuple[str, str], ...] = ()

    def prop(self, name: str) -> str | None:
        """The value of the first property called ``name``, or ``None``."""
        for key, value in self.properties:
            if key == name:
                return value
        return None

    @property
    def support_level(self) -> str | None:
        """The ``pumpguard:support-level`` property, or ``None`` when absent."""
        return self.prop(prop.SUPPORT_LEVEL)

    @property
    def end_of_support(self) -> str | None:
        """The ``cdx:lifecycle:milestone:endOfSupport`` property, or ``None``."""
        return self.prop(prop.END_OF_SUPPORT)

    @property
    def label(self) -> str:
        """``name@version`` (or the name alone), for messages."""
        return f"{self.name}@{self.version}" if self.version else self.name


def component_identity(component: SbomComponent) -> tuple[str, str]:
    """What makes two components of two SBOMs "the same component".

    A VEX analysis recorded for a component applies to a component of another
    SBOM (for instance the next release's) when both identities are equal: the
    same package URL with its version or, without one, the same name and
    version; and the same hashes. A package URL without a version
    (``pkg:generic/zlib``) takes the component's version
    (``pkg:generic/zlib@1.2.11``), so that zlib 1.2.12 is not "the same
    component" as zlib 1.2.11.

    Returns:
        ``(identity, hashes)``: the canonical purl (with a version when the
        component has one) or ``name@version``, and the sorted ``ALG:content``
        hashes joined by commas (empty if none).
    """
    identity: str = component.label
    if component.purl:
        try:
            purl = PackageURL.from_string(component.purl)
        except ValueError:
            identity = component.purl
            if component.version and "@" not in component.purl:
                identity += f"@{component.version}"
        else:
            if not purl.version and component.version:
                purl = purl._replace(version=component.version)
            identity = str(purl.to_string())
    hashes = ",".join(f"{alg}:{content.lower()}" for alg, content in component.hashes)
    return identity, hashes


def load_sbom(data: bytes, where: str) -> dict[str, Any]:
    """Parse and validate a CycloneDX 1.6 JSON SBOM.

    Args:
        data: The document.
        where: Its file name, for messages.

    Returns:
        The parsed document.

    Raises:
        SbomValidationError: Not JSON, not CycloneDX 1.6, or not schema-valid;
            the message starts with ``where``.
    """
    try:
        validate_sbom(data)
    except SbomValidationError as e:
        raise SbomValidationError(f"{where}: {e}") from e
    doc: dict[str, Any] = load_strict(data)
    return doc


def read_components(doc: dict[str, Any]) -> list[SbomComponent]:
    """The components of a (validated) SBOM, nested ones flattened, in order.

    ``metadata.component`` (the firmware itself) is not included.
    """
    return [_component(raw) for raw in _walk(doc.get("components", []))]


def _walk(components: list[Any]) -> Iterator[dict[str, Any]]:
    for raw in components:
        if isinstance(raw, dict):
            yield raw
            yield from _walk(raw.get("components", []))


def _licenses(raw: dict[str, Any]) -> tuple[str, ...]:
    result: list[str] = []
    for entry in raw.get("licenses", []):
        if "expression" in entry:
            result.append(entry["expression"])
        elif isinstance(entry.get("license"), dict):
            lic = entry["license"]
            value = lic.get("id") or lic.get("name")
            if isinstance(value, str):
                result.append(value)
    return tuple(sorted(result))


def _component(raw: dict[str, Any]) -> SbomComponent:
    supplier = raw.get("supplier")
    swid = raw.get("swid")
    return SbomComponent(
        bom_ref=raw.get("bom-ref"),
        type=raw["type"],
        name=raw["name"],
        version=raw.get("version") or None,
        group=raw.get("group") or None,
        supplier=supplier.get("name") if isinstance(supplier, dict) else None,
        purl=raw.get("purl"),
        cpe=raw.get("cpe"),
        swid=swid.get("tagId") if isinstance(swid, dict) else None,
        hashes=tuple(sorted((h["alg"], h["content"].lower()) for h in raw.get("hashes", []))),
        licenses=_licenses(raw),
        properties=tuple((p["name"], p.get("value", "")) for p in raw.get("properties", [])),
    )
