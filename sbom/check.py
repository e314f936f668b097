"""Does an SBOM say what a premarket reviewer needs? Pure checks, no I/O.

Three things are checked, per component and for the document:

* the NTIA minimum elements: supplier, component name, version, a unique
  identifier (purl, CPE or SWID), the dependency relationship, the author of
  the SBOM data and its timestamp;
* the FDA's per-component support facts: the support level
  (``pumpguard:support-level``) and end-of-support date
  (``cdx:lifecycle:milestone:endOfSupport``);
* support dates: components past their end of support, or reaching it within
  a horizon.

Each problem has a *level*, the least strict policy it fails: ``ntia`` (NTIA
elements missing), ``fda`` (also support facts absent, or support ended) or
``strict`` (also facts stated as unknown, support ending within the horizon,
or components stated unsupported). A policy fails when a problem of its level
or a lower one is found.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from sbom import properties as prop
from sbom.model import SbomComponent, read_components

__all__ = ["POLICIES", "CheckReport", "Problem", "SupportStatus", "check_sbom"]

#: Policies, least strict first.
POLICIES = ("ntia", "fda", "strict")


@dataclasses.dataclass(frozen=True)
class Problem:
    """Something an SBOM lacks or a component's support state.

    Attributes:
        component: ``name@version`` of the component, or ``None`` for the document.
        bom_ref: The component's bom-ref, if any.
        element: What is concerned, e.g. ``supplier`` or ``end of support``.
        message: A sentence for the reviewer.
        level: The least strict policy this problem fails (:data:`POLICIES`).
    """

    component: str | None
    bom_ref: str | None
    element: str
    message: str
    level: str

    def to_json(self) -> dict[str, Any]:
        """The problem as a JSON object."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class SupportStatus:
    """A component's support state on the day of the check.

    Attributes:
        component: ``name@version``.
        bom_ref: Its bom-ref.
        support_level: The stated level, or ``None`` if absent.
        end_of_support: The stated date (ISO), ``unknown``, or ``None`` if absent.
        status: ``ended``, ``ending`` (within the horizon), ``supported``, or
            ``unknown``.
        days_left: Days until the end of support (negative once past), or ``None``.
    """

    component: str
    bom_ref: str | None
    support_level: str | None
    end_of_support: str | None
    status: str
    days_left: int | None

    def to_json(self) -> dict[str, Any]:
        """The status as a JSON object."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """The result of :func:`check_sbom`.

    Attributes:
        components: How many components were checked (the firmware not included).
        problems: Every problem found, document ones first.
        support: Each component's support state.
        today: The day the support dates were compared with.
        horizon_days: The horizon used.
    """

    components: int
    problems: tuple[Problem, ...]
    support: tuple[SupportStatus, ...]
    today: datetime.date
    horizon_days: int

    def failures(self, policy: str) -> tuple[Problem, ...]:
        """The problems that make ``policy`` fail."""
        limit = POLICIES.index(policy)
        return tuple(p for p in self.problems if POLICIES.index(p.level) <= limit)

    def passes(self, policy: str) -> bool:
        """Whether the SBOM passes ``policy``."""
        return not self.failures(policy)

    def to_json(self, policy: str) -> dict[str, Any]:
        """The report as a JSON object, judged by ``policy``."""
        return {
            "policy": policy,
            "passed": self.passes(policy),
            "components": self.components,
            "today": self.today.isoformat(),
            "horizon_days": self.horizon_days,
            "failures": [p.to_json() for p in self.failures(policy)],
            "problems": [p.to_json() for p in self.problems],
            "support": [s.to_json() for s in self.support],
        }


def check_sbom(
    doc: Mapping[str, Any], *, today: datetime.date, horizon_days: int = 365
) -> CheckReport:
    """Check a schema-valid CycloneDX SBOM.

    Args:
        doc: The document (:func:`sbom.model.load_sbom` validates it).
        today: The day support dates are compared with.
        horizon_days: Components whose support ends within this many days are
            reported as ``ending``.

    Returns:
        The report; judge it with :meth:`CheckReport.passes`.
    """
    if horizon_days < 0:
        raise ValueError("horizon_days must not be negative")
    problems: list[Problem] = list(_document_problems(doc))
    components = read_components(dict(doc))
    depended = {d.get("ref") for d in doc.get("dependencies", [])}
    support: list[SupportStatus] = []
    for component in components:
        problems.extend(_ntia_problems(component, depended))
        status, support_problems = _support(component, today, horizon_days)
        support.append(status)
        problems.extend(support_problems)
    return CheckReport(len(components), tuple(problems), tuple(support), today, horizon_days)


def _document_problems(doc: Mapping[str, Any]) -> list[Problem]:
    metadata = doc.get("metadata", {})
    problems: list[Problem] = []

    def missing(element: str, message: str) -> None:
        problems.append(Problem(None, None, element, message, "ntia"))

    named = [
        entity.get("name")
        for entity in (
            *metadata.get("authors", []),
            metadata.get("manufacturer") or {},
            metadata.get("supplier") or {},
        )
    ]
    if not any(named):
        missing("author", "the SBOM names no author (metadata.authors, manufacturer or supplier)")
    if not metadata.get("timestamp"):
        missing("timestamp", "the SBOM has no timestamp (metadata.timestamp)")
    firmware = metadata.get("component")
    if not isinstance(firmware, dict):
        missing("primary component", "the SBOM has no primary component (metadata.component)")
        return problems
    label = f"{firmware.get('name')}@{firmware.get('version')}"
    ref = firmware.get("bom-ref")

    def primary(element: str, message: str) -> None:
        problems.append(Problem(label, ref, element, f"the primary component {message}", "ntia"))

    if not (firmware.get("supplier") or firmware.get("manufacturer") or metadata.get("supplier")):
        primary("supplier", "names no supplier")
    if not firmware.get("version"):
        primary("version", "has no version")
    if ref not in {d.get("ref") for d in doc.get("dependencies", [])}:
        primary("dependencies", "has no entry in dependencies")
    return problems


def _ntia_problems(component: SbomComponent, depended: set[Any]) -> list[Problem]:
    found: list[Problem] = []

    def missing(element: str, message: str) -> None:
        found.append(Problem(component.label, component.bom_ref, element, message, "ntia"))

    if not component.supplier:
        missing("supplier", "no supplier name")
    if not component.version or component.version == prop.UNKNOWN:
        missing("version", "no version")
    if not (component.purl or component.cpe or component.swid):
        missing("unique identifier", "no purl, CPE or SWID tag id")
    if component.bom_ref is None or component.bom_ref not in depended:
        missing("dependencies", "no entry in dependencies (its relationships are not stated)")
    return found


def _support(
    component: SbomComponent, today: datetime.date, horizon_days: int
) -> tuple[SupportStatus, list[Problem]]:
    found: list[Problem] = []

    def problem(element: str, message: str, level: str) -> None:
        found.append(Problem(component.label, component.bom_ref, element, message, level))

    level = component.support_level
    end = component.end_of_support
    if level is None:
        problem("support level", f"no {prop.SUPPORT_LEVEL} property", "fda")
    elif level == prop.UNKNOWN:
        problem("support level", "support level stated as unknown", "strict")
    elif level == "unsupported":
        problem("support level", "stated as unsupported by its supplier", "strict")
    elif level not in prop.SUPPORT_LEVELS:
        problem(
            "support level",
            f"support level {level!r} is not one of {', '.join(prop.SUPPORT_LEVELS)}",
            "fda",
        )

    status, days_left = "unknown", None
    if end is None:
        problem("end of support", f"no {prop.END_OF_SUPPORT} property", "fda")
    elif end == prop.UNKNOWN:
        problem("end of support", "end of support stated as unknown", "strict")
    else:
        try:
            date = datetime.date.fromisoformat(end)
        except ValueError:
            problem("end of support", f"end of support {end!r} is not a YYYY-MM-DD date", "fda")
        else:
            days_left = (date - today).days
            if days_left < 0:
                status = "ended"
                problem("end of support", f"support ended on {end} ({-days_left} days ago)", "fda")
            elif days_left <= horizon_days:
                status = "ending"
                problem("end of support", f"support ends on {end}, in {days_left} days", "strict")
            else:
                status = "supported"
    return SupportStatus(component.label, component.bom_ref, level, end, status, days_left), found
