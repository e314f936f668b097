"""What changed between two releases' SBOMs: pure, no I/O.

Components are paired across the two SBOMs by what stays the same when a
component is upgraded: the package URL without its version and qualifiers
(``pkg:deb/debian/zlib1g``), or, without a purl, the component's group and
name. Paired components whose version, hashes, supplier or licenses differ are
*changed*; the others are *added* or *removed*. Findings of two audits are
compared by vulnerability and component, giving vulnerabilities *introduced*
and *fixed* by the new release.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from packageurl import PackageURL

from sbom.audit import AuditResult, Finding
from sbom.model import SbomComponent

__all__ = ["ComponentChange", "SbomDiff", "component_key", "diff_sboms"]

_COMPARED = ("version", "hashes", "supplier", "licenses")


def component_key(component: SbomComponent) -> str:
    """The key pairing a component with its counterpart in another release."""
    if component.purl:
        try:
            purl = PackageURL.from_string(component.purl)
        except ValueError:
            pass
        else:
            return str(PackageURL(type=purl.type, namespace=purl.namespace, name=purl.name))
    group = f"{component.group}/" if component.group else ""
    return f"name:{group}{component.name}"


@dataclasses.dataclass(frozen=True)
class ComponentChange:
    """A component present in both releases that differs.

    Attributes:
        key: The pairing key (:func:`component_key`).
        old: The component in the old release.
        new: The component in the new release.
        fields: Names of the fields that differ: ``version``, ``hashes``,
            ``supplier``, ``licenses``.
    """

    key: str
    old: SbomComponent
    new: SbomComponent
    fields: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The change as a JSON object."""
        return {
            "key": self.key,
            "name": self.new.name,
            "changes": {
                name: {"old": _json_value(self.old, name), "new": _json_value(self.new, name)}
                for name in self.fields
            },
        }


def _json_value(component: SbomComponent, name: str) -> Any:
    value = getattr(component, name)
    if name == "hashes":
        return dict(value)
    if name == "licenses":
        return list(value)
    return value


@dataclasses.dataclass(frozen=True)
class SbomDiff:
    """The difference between two SBOMs.

    Attributes:
        added: Components only in the new SBOM.
        removed: Components only in the old SBOM.
        changed: Paired components that differ.
        unchanged: How many paired components are identical in the compared fields.
        introduced: Findings of the new release the old one did not have
            (``None`` when no audits were compared).
        fixed: Findings of the old release the new one no longer has.
    """

    added: tuple[SbomComponent, ...]
    removed: tuple[SbomComponent, ...]
    changed: tuple[ComponentChange, ...]
    unchanged: int
    introduced: tuple[Finding, ...] | None = None
    fixed: tuple[Finding, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """The difference as a JSON object."""

        def brief(c: SbomComponent) -> dict[str, Any]:
            return {"name": c.name, "version": c.version, "purl": c.purl, "bom-ref": c.bom_ref}

        def findings(fs: tuple[Finding, ...] | None) -> list[dict[str, Any]] | None:
            return None if fs is None else [f.to_json() for f in fs]

        return {
            "added": [brief(c) for c in self.added],
            "removed": [brief(c) for c in self.removed],
            "changed": [c.to_json() for c in self.changed],
            "unchanged": self.unchanged,
            "vulnerabilities": {
                "introduced": findings(self.introduced),
                "fixed": findings(self.fixed),
            },
        }


def diff_sboms(
    old: Sequence[SbomComponent],
    new: Sequence[SbomComponent],
    old_audit: AuditResult | None = None,
    new_audit: AuditResult | None = None,
) -> SbomDiff:
    """Compare two releases' components, and their audits if given.

    Args:
        old: Components of the old SBOM.
        new: Components of the new SBOM.
        old_audit: The old SBOM's audit (against the same store as ``new_audit``).
        new_audit: The new SBOM's audit.
    """
    old_by_key: dict[str, list[SbomComponent]] = defaultdict(list)
    new_by_key: dict[str, list[SbomComponent]] = defaultdict(list)
    for c in old:
        old_by_key[component_key(c)].append(c)
    for c in new:
        new_by_key[component_key(c)].append(c)
    added: list[SbomComponent] = []
    removed: list[SbomComponent] = []
    changed: list[ComponentChange] = []
    unchanged = 0
    for key in sorted(old_by_key.keys() | new_by_key.keys()):
        before, after = list(old_by_key.get(key, [])), list(new_by_key.get(key, []))
        # Several versions of one package: pair equal versions first.
        for component in list(before):
            twin = next((c for c in after if c.version == component.version), None)
            if twin is not None:
                before.remove(component)
                after.remove(twin)
                unchanged += _pair(key, component, twin, changed)
        for component, other in zip(before, after, strict=False):
            unchanged += _pair(key, component, other, changed)
        removed.extend(before[len(after) :])
        added.extend(after[len(before) :])
    introduced = fixed = None
    if old_audit is not None and new_audit is not None:
        old_keys = {_finding_key(f) for f in old_audit.findings}
        new_keys = {_finding_key(f) for f in new_audit.findings}
        introduced = tuple(f for f in new_audit.findings if _finding_key(f) not in old_keys)
        fixed = tuple(f for f in old_audit.findings if _finding_key(f) not in new_keys)
    return SbomDiff(tuple(added), tuple(removed), tuple(changed), unchanged, introduced, fixed)


def _pair(key: str, old: SbomComponent, new: SbomComponent, changed: list[ComponentChange]) -> int:
    fields = tuple(name for name in _COMPARED if getattr(old, name) != getattr(new, name))
    if fields:
        changed.append(ComponentChange(key, old, new, fields))
        return 0
    return 1


def _finding_key(finding: Finding) -> tuple[str, str]:
    return finding.vuln_id, component_key(finding.component)
