"""Combining the components of several inputs into one list.

A firmware's components can come from the TOML manifest, a Yocto image
manifest, a dpkg status file and merged CycloneDX SBOMs
(:mod:`sbom.yocto`, :mod:`sbom.dpkg`, :mod:`sbom.merge`). The same component
(same name and version, hence same bom-ref) may be described by several of
them: the first description wins, and a fact only a later one states (a
license, a CPE, a support date) is added to it. Nothing is made up.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence

from sbom.errors import SbomInputError
from sbom.manifest import ComponentSpec
from sbom.properties import UNKNOWN

__all__ = ["combine"]

logger = logging.getLogger(__name__)

# Fields whose "not known" value is None or empty; filled from later inputs.
_FILLABLE = ("supplier", "purl", "cpe", "licenses", "hashes", "end_of_support", "description")


def combine(inputs: Iterable[Sequence[ComponentSpec]]) -> tuple[ComponentSpec, ...]:
    """Merge components of several inputs, in input order.

    Args:
        inputs: Component lists, the most authoritative (the manifest) first.

    Returns:
        One component per bom-ref. ``depends_on`` is the union of what the
        inputs say; every reference must be a component of the result.

    Raises:
        SbomInputError: A component depends on a component no input lists.
    """
    merged: dict[str, ComponentSpec] = {}
    for specs in inputs:
        for spec in specs:
            first = merged.get(spec.bom_ref)
            merged[spec.bom_ref] = spec if first is None else _merge(first, spec)
    for spec in merged.values():
        for ref in spec.depends_on:
            if ref not in merged:
                raise SbomInputError(f"component {spec.bom_ref} depends on {ref}, which is missing")
    return tuple(merged.values())


def _merge(first: ComponentSpec, later: ComponentSpec) -> ComponentSpec:
    changes: dict[str, object] = {}
    for name in _FILLABLE:
        mine, theirs = getattr(first, name), getattr(later, name)
        if not mine and theirs:
            changes[name] = theirs
        elif mine and theirs and mine != theirs:
            logger.warning(
                "%s: %s differs between inputs (%r, %r); keeping the first",
                first.bom_ref,
                name,
                mine,
                theirs,
            )
    if first.support_level == UNKNOWN and later.support_level != UNKNOWN:
        changes["support_level"] = later.support_level
    depends_on = tuple(dict.fromkeys(first.depends_on + later.depends_on))
    if depends_on != first.depends_on:
        changes["depends_on"] = depends_on
    names = {name for name, _ in first.properties}
    extra = tuple(p for p in later.properties if p[0] not in names)
    if extra:
        changes["properties"] = first.properties + extra
    return dataclasses.replace(first, **changes) if changes else first  # type: ignore[arg-type]
