"""Matching SBOM components against advisories: pure, no I/O.

A component is matched by its package URL against OSV records (``SEMVER`` and
``ECOSYSTEM`` ranges and listed versions) and by its CPE against NVD
configurations (exact versions and ``versionStart/End`` bounds). A component
whose package URL no advisory source covers (``pkg:github``, ``pkg:generic``,
``pkg:rpm``, a ``deb`` purl of a distribution OSV does not publish) and that
has no CPE is *not checked*, with the reason; so is a component whose version
cannot be ordered against an advisory of its package (an ecosystem without an
ordering pumpguard knows, or a version that is not one of its ecosystem's:
:mod:`sbom.versions` never orders by guess). A distribution package is
matched only against the affected entries of its own release (the purl's
``distro`` qualifier); when its release is not known, every release's entries
are tried and the finding says so. Advisories about the same vulnerability
(an OSV record whose alias or ``upstream`` id is the CVE an NVD record
describes) become one finding. Each finding carries its severity, its KEV
status, the versions that fix it and the manufacturer's latest VEX analysis; a
finding without one needs triage.

The advisories come from an :class:`AdvisorySource` (the store implements it);
this module only decides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from sbom._cpe import parse_cpe
from sbom._purl import PurlKeys, ecosystem_release, purl_keys
from sbom._ranges import cpe_affects, osv_affects
from sbom.advisory import Advisory, CpeRange, KevEntry, PackageRange, cvss_version
from sbom.model import SbomComponent, component_identity
from sbom.versions import UnorderableVersionError
from sbom.vex import Analysis

__all__ = [
    "SEVERITIES",
    "AdvisorySource",
    "AuditResult",
    "Finding",
    "audit",
    "cpe_affects",
    "osv_affects",
]

#: Severity labels, most severe first.
SEVERITIES = ("critical", "high", "medium", "low", "none", "unknown")
#: Analysis states that settle a finding; ``in_triage`` does not.
_SETTLED = frozenset(
    {"resolved", "resolved_with_pedigree", "exploitable", "false_positive", "not_affected"}
)


class AdvisorySource(Protocol):
    """Where advisories are looked up (implemented by :class:`sbom.vulndb.VulnDb`)."""

    def packages(self, ecosystem: str, name: str) -> list[tuple[Advisory, PackageRange]]:
        """Advisories affecting the package ``(ecosystem, name)``."""
        ...  # pragma: no cover

    def cpes(self, vendor: str, product: str) -> list[tuple[Advisory, CpeRange]]:
        """Advisories affecting a CPE product (``vendor`` ``*``: any)."""
        ...  # pragma: no cover

    def kev(self, cve_ids: Iterable[str]) -> dict[str, KevEntry]:
        """KEV entries of those ids in the catalog."""
        ...  # pragma: no cover

    def nvd(self, cve_ids: Iterable[str]) -> dict[str, Advisory]:
        """NVD records of those CVE ids the source holds."""
        ...  # pragma: no cover


@dataclasses.dataclass(frozen=True)
class Finding:
    """A vulnerability that affects a component.

    Attributes:
        vuln_id: The vulnerability's id: its CVE id when known.
        aliases: The other ids of the advisories it came from.
        component: The affected component.
        matched_by: ``purl`` and/or ``cpe``.
        sources: ``source:id`` of each advisory, e.g. ``nvd:CVE-2018-25032``;
            the NVD record of the finding's CVE is one of them when the store
            holds it, even if only the purl matched.
        summary: One line describing the vulnerability.
        cvss_score: The highest CVSS base score of the advisories, or ``None``.
        cvss_vector: The vector of that score, or ``None``.
        severity: One of :data:`SEVERITIES`.
        fixed_versions: Versions the advisories say fix it.
        kev: The KEV entry when the vulnerability is known to be exploited.
        analysis: The latest VEX analysis, or ``None``.
        notes: What the reviewer must know about the match, e.g. that the
            component's distribution release is not known.
    """

    vuln_id: str
    aliases: tuple[str, ...]
    component: SbomComponent
    matched_by: tuple[str, ...]
    sources: tuple[str, ...]
    summary: str
    cvss_score: float | None
    cvss_vector: str | None
    severity: str
    fixed_versions: tuple[str, ...]
    kev: KevEntry | None = None
    analysis: Analysis | None = None
    notes: tuple[str, ...] = ()

    @property
    def cvss_version(self) -> str | None:
        """The CVSS version of :attr:`cvss_vector`, or ``None``."""
        return cvss_version(self.cvss_vector)

    @property
    def needs_triage(self) -> bool:
        """True when no analysis settles the finding (none, or ``in_triage``)."""
        return self.analysis is None or self.analysis.state not in _SETTLED

    def sort_key(self) -> tuple[Any, ...]:
        """Known-exploited first, then by score and severity, then by id."""
        return (
            self.kev is None,
            -(self.cvss_score if self.cvss_score is not None else -1.0),
            SEVERITIES.index(self.severity),
            self.vuln_id,
            self.component.label,
        )

    def to_json(self) -> dict[str, Any]:
        """The finding as a JSON object."""
        analysis = None
        if self.analysis is not None:
            analysis = {**self.analysis.statement()}
        return {
            "id": self.vuln_id,
            "aliases": list(self.aliases),
            "component": {
                "bom-ref": self.component.bom_ref,
                "name": self.component.name,
                "version": self.component.version,
                "purl": self.component.purl,
                "cpe": self.component.cpe,
            },
            "matched_by": list(self.matched_by),
            "sources": list(self.sources),
            "summary": self.summary,
            "severity": self.severity,
            "cvss_score": self.cvss_score,
            "cvss_vector": self.cvss_vector,
            "cvss_version": self.cvss_version,
            "fixed_versions": list(self.fixed_versions),
            "kev": dataclasses.asdict(self.kev) if self.kev else None,
            "analysis": analysis,
            "needs_triage": self.needs_triage,
            "notes": list(self.notes),
        }


@dataclasses.dataclass(frozen=True)
class AuditResult:
    """What an audit found.

    Attributes:
        findings: Sorted by :meth:`Finding.sort_key`.
        components: How many components were audited.
        unidentified: Components no advisory can match (no CPE, and no
            package URL with a version that an advisory source covers), and
            components whose version could not be ordered against an advisory
            of their package (their ecosystem has no ordering pumpguard knows,
            or a version does not parse in it): a reviewer must know they were
            not checked, or not completely.
        reasons: Why, one per entry of ``unidentified``.
    """

    findings: tuple[Finding, ...]
    components: int
    unidentified: tuple[SbomComponent, ...]
    reasons: tuple[str, ...] = ()

    def not_checked(self) -> list[tuple[SbomComponent, str]]:
        """``(component, reason)`` of each component that was not checked."""
        reasons = self.reasons + ("not checked",) * (len(self.unidentified) - len(self.reasons))
        return list(zip(self.unidentified, reasons, strict=True))

    @property
    def needs_triage(self) -> tuple[Finding, ...]:
        """Findings without a settling analysis."""
        return tuple(f for f in self.findings if f.needs_triage)

    def counts(self) -> dict[str, int]:
        """Finding counts: total, per severity, KEV, needing triage."""
        result = {"findings": len(self.findings), "kev": 0, "needs_triage": 0}
        result.update(dict.fromkeys(SEVERITIES, 0))
        for f in self.findings:
            result[f.severity] += 1
            result["kev"] += f.kev is not None
            result["needs_triage"] += f.needs_triage
        return result


# --------------------------------------------------------------------- audit
@dataclasses.dataclass
class _Match:
    advisory: Advisory
    via: str
    fixed: list[str]
    note: str | None = None


def audit(
    components: Sequence[SbomComponent],
    source: AdvisorySource,
    analyses: Iterable[Analysis] = (),
) -> AuditResult:
    """Audit components against the advisories of ``source``.

    Args:
        components: The SBOM's components (:func:`sbom.model.read_components`).
        source: Where advisories are looked up.
        analyses: VEX statements, oldest first; for each vulnerability and
            component the last statement applies. A statement applies to a
            component with the same identity and hashes
            (:func:`sbom.model.component_identity`).

    Returns:
        The findings, sorted, and the components no advisory could be matched
        to, with the reason.
    """
    latest: dict[tuple[str, str, str], Analysis] = {}
    for analysis in analyses:
        latest[analysis.key] = analysis
    findings: list[Finding] = []
    unidentified: list[SbomComponent] = []
    reasons: list[str] = []
    for component in components:
        matches, unchecked = _matches(component, source)
        if unchecked is not None:
            unidentified.append(component)
            reasons.append(unchecked)
        findings.extend(_findings(component, matches, source, latest))
    findings.sort(key=Finding.sort_key)
    return AuditResult(tuple(findings), len(components), tuple(unidentified), tuple(reasons))


def _matches(component: SbomComponent, source: AdvisorySource) -> tuple[list[_Match], str | None]:
    """The component's matches, and why it was not checked (``None`` if it was)."""
    matches: list[_Match] = []
    identified = incomplete = False
    problems: list[str] = []
    keys = purl_keys(component.purl) if component.purl else None
    version = (keys.version if keys else None) or component.version
    if component.purl and keys is None:
        problems.append("its purl does not parse")
    elif keys is not None and keys.uncovered is not None:
        problems.append(keys.uncovered)
    elif keys is not None and not version:
        problems.append("its purl has no version, nor has the component")
    elif keys is not None and version:
        identified = True
        purl_matches, unordered = _purl_matches(keys, version, source)
        matches += purl_matches
        if unordered:
            # Never "not affected" by an advisory whose range could not be evaluated.
            incomplete = True
            problems.append(_unordered_reason(unordered))
    cpe = parse_cpe(component.cpe) if component.cpe else None
    cpe_version = cpe.version if cpe and cpe.version not in ("*", "-") else component.version
    if component.cpe and cpe is None:
        problems.append("its CPE does not parse")
    elif cpe is not None and not cpe_version:
        problems.append("its CPE has no version, nor has the component")
    elif cpe is not None and cpe_version:
        identified = True
        seen_cpe: set[str] = set()
        for advisory, cpe_range in source.cpes(cpe.vendor, cpe.product):
            if cpe.part not in ("*", cpe_range.part) and cpe_range.part != "*":
                continue
            if advisory.id in seen_cpe or not cpe_affects(cpe_version, cpe.update, cpe_range):
                continue
            seen_cpe.add(advisory.id)
            fixed = [cpe_range.end_excluding] if cpe_range.end_excluding else []
            matches.append(_Match(advisory, "cpe", fixed))
    if identified and not incomplete:
        return matches, None
    return matches, "; ".join(problems) or "no purl or CPE"


def _purl_matches(
    keys: PurlKeys, version: str, source: AdvisorySource
) -> tuple[list[_Match], dict[str, list[str]]]:
    """The purl's matches, and the advisories that could not be evaluated, by reason."""
    # Every affected entry of each advisory under the purl's keys, except those
    # of another release than the component's (Debian:12 for a debian-11 package).
    entries: dict[tuple[str, str], tuple[Advisory, list[PackageRange]]] = {}
    for ecosystem, name in keys.keys:
        for advisory, package in source.packages(ecosystem, name):
            # Releases only matter to distribution packages (deb, apk).
            release = ecosystem_release(package.ecosystem) if keys.distro else None
            if release is not None and keys.release is not None and release != keys.release:
                continue
            entry = entries.setdefault((advisory.source, advisory.id), (advisory, []))
            entry[1].append(package)
    matches: list[_Match] = []
    unordered: dict[str, list[str]] = {}
    for advisory, packages in entries.values():
        hits: list[PackageRange] = []
        for package in packages:
            try:
                if osv_affects(version, package):
                    hits.append(package)
            except UnorderableVersionError as error:
                unordered.setdefault(str(error), []).append(advisory.id)
        if not hits:
            continue
        fixed = [v for p in hits for r in p.ranges for kind, v in r.events if kind == "fixed"]
        matches.append(_Match(advisory, "purl", fixed, _release_note(keys, packages, hits)))
    return matches, unordered


def _unordered_reason(unordered: dict[str, list[str]]) -> str:
    """Why a component's version could not be checked against some advisories."""
    parts = [f"{why} ({_some(sorted(set(ids)))})" for why, ids in sorted(unordered.items())]
    return "its version cannot be ordered against every advisory of its package: " + "; ".join(
        parts
    )


def _some(ids: list[str], shown: int = 5) -> str:
    more = len(ids) - shown
    return ", ".join(ids[:shown]) + (f" and {more} more" if more > 0 else "")


def _release_note(
    keys: PurlKeys, packages: list[PackageRange], hits: list[PackageRange]
) -> str | None:
    """Say so when the entries of several releases were tried for want of the component's."""
    if keys.release is not None or keys.distro is None:
        return None
    releases = sorted({p.ecosystem for p in packages if ecosystem_release(p.ecosystem)})
    if not releases:
        return None
    why = (
        f"its distro qualifier {keys.distro_qualifier!r} names no release the advisories know"
        if keys.distro_qualifier
        else "its purl has no distro qualifier"
    )
    affected = sorted({p.ecosystem for p in hits if ecosystem_release(p.ecosystem)})
    others = [r for r in releases if r not in affected]
    parts = ([f"affected as {', '.join(affected)}"] if affected else []) + (
        [f"not as {', '.join(others)}"] if others else []
    )
    return f"the component's {keys.distro} release could not be determined ({why}): " + ", ".join(
        parts
    )


def _findings(
    component: SbomComponent,
    matches: list[_Match],
    source: AdvisorySource,
    latest: dict[tuple[str, str, str], Analysis],
) -> list[Finding]:
    # Advisories sharing an id, alias or upstream id describe one vulnerability.
    groups: list[tuple[set[str], list[_Match]]] = []
    for match in matches:
        ids = set(match.advisory.ids)
        joined = [g for g in groups if g[0] & ids]
        merged_ids, merged = set(ids), [match]
        for g in joined:
            groups.remove(g)
            merged_ids |= g[0]
            merged = g[1] + merged
        groups.append((merged_ids, merged))
    if not groups:
        return []
    all_cves = {i for ids, _ in groups for i in ids if i.startswith("CVE-")}
    kev = source.kev(all_cves)
    # The NVD record of a CVE matched only through OSV (a Debian record naming
    # it upstream) still gives the finding its NVD severity.
    matched_nvd = {
        m.advisory.id for _, group in groups for m in group if m.advisory.source == "nvd"
    }
    nvd = source.nvd(all_cves - matched_nvd) if all_cves - matched_nvd else {}
    identity, hashes = component_identity(component)
    result: list[Finding] = []
    for ids, group in groups:
        cves = sorted(i for i in ids if i.startswith("CVE-"))
        vuln_id = cves[0] if cves else sorted(ids)[0]
        advisories = [m.advisory for m in group] + [nvd[c] for c in cves if c in nvd]
        scored = [a for a in advisories if a.cvss_score is not None]
        best = max(scored, key=lambda a: a.cvss_score or 0.0) if scored else advisories[0]
        severity = best.severity
        if not scored:  # a qualitative severity (GitHub's) is better than none
            severity = min((a.severity for a in advisories), key=SEVERITIES.index)
        analysis = next(
            (
                latest[(i, identity, hashes)]
                for i in [vuln_id, *sorted(ids - {vuln_id})]
                if (i, identity, hashes) in latest
            ),
            None,
        )
        result.append(
            Finding(
                vuln_id=vuln_id,
                aliases=tuple(sorted(ids - {vuln_id})),
                component=component,
                matched_by=tuple(sorted({m.via for m in group})),
                sources=tuple(sorted({f"{a.source}:{a.id}" for a in advisories})),
                summary=next((a.summary for a in advisories if a.summary), ""),
                cvss_score=best.cvss_score,
                cvss_vector=best.cvss_vector,
                severity=severity,
                fixed_versions=tuple(dict.fromkeys(v for m in group for v in m.fixed)),
                kev=next((kev[c] for c in cves if c in kev), None),
                analysis=analysis,
                notes=tuple(dict.fromkeys(m.note for m in group if m.note)),
            )
        )
    return result
