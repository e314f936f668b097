"""The threat model's vocabulary: elements, boundaries, flows, threats, controls.

Typed and frozen, so the model is data that code can check: every reference
resolves (:meth:`ThreatModel.validate`), every threat has controls and every
control names where it is implemented and the tests that prove it
(:mod:`threat_model.check`). The catalogue of this system is in
:mod:`threat_model.catalogue`.

Risk is rated by exploitability and severity, as FDA's premarket cybersecurity
guidance asks (exploitability, not probability, for security risks), before and
after the threat's controls.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import TypeVar

from threat_model.errors import ThreatModelError

__all__ = [
    "Boundary",
    "Category",
    "Control",
    "Element",
    "ElementKind",
    "Exploitability",
    "Flow",
    "Risk",
    "Severity",
    "Threat",
    "ThreatModel",
]


class ElementKind(StrEnum):
    """DFD element kinds."""

    ACTOR = "actor"  # external entity: a person or a system outside our control
    PROCESS = "process"
    STORE = "store"  # data store
    DEVICE = "device"  # hardware with its own trust (HSM, the pump's bootloader)


class Category(StrEnum):
    """STRIDE, plus the patient-safety threats of a medical device."""

    SPOOFING = "spoofing"
    TAMPERING = "tampering"
    REPUDIATION = "repudiation"
    INFORMATION_DISCLOSURE = "information-disclosure"
    DENIAL_OF_SERVICE = "denial-of-service"
    ELEVATION_OF_PRIVILEGE = "elevation-of-privilege"
    PATIENT_SAFETY = "patient-safety"


class Exploitability(IntEnum):
    """How easily the threat can be exploited (FDA: exploitability, not probability)."""

    REMOTE = 5  # network attacker, no credentials, public technique
    ADJACENT = 4  # hospital network access or a stolen low-privilege credential
    INSIDER = 3  # a privileged credential or key, or physical access to a pump
    HARD = 2  # several independent secrets, or skills and access together
    THEORETICAL = 1  # no known way with the controls' assumptions intact


class Severity(IntEnum):
    """Worst credible outcome for patients and for the device's effectiveness."""

    CATASTROPHIC = 5  # patient death or serious injury, possibly many patients
    CRITICAL = 4  # injury, or therapy interrupted for many patients
    SERIOUS = 3  # therapy delayed or one pump unusable
    MINOR = 2  # inconvenience, degraded service, no patient impact
    NEGLIGIBLE = 1


@dataclass(frozen=True)
class Risk:
    """An exploitability x severity rating."""

    exploitability: Exploitability
    severity: Severity

    @property
    def score(self) -> int:
        """exploitability x severity, 1..25."""
        return int(self.exploitability) * int(self.severity)

    @property
    def level(self) -> str:
        """``high`` (>= 15), ``medium`` (>= 8) or ``low``: the acceptance bands."""
        if self.score >= 15:
            return "high"
        if self.score >= 8:
            return "medium"
        return "low"

    @property
    def acceptable(self) -> bool:
        """Residual risk acceptance: low, or medium only when not catastrophic."""
        return self.level == "low" or (
            self.level == "medium" and self.severity < Severity.CATASTROPHIC
        )


@dataclass(frozen=True)
class Boundary:
    """A trust boundary: everything inside shares one level of trust."""

    id: str
    name: str
    description: str


@dataclass(frozen=True)
class Element:
    """A DFD element (actor, process, store or device) inside one boundary."""

    id: str
    name: str
    kind: ElementKind
    boundary: str
    description: str


@dataclass(frozen=True)
class Flow:
    """Data moving from one element to another."""

    id: str
    source: str
    target: str
    data: str
    protocol: str = ""


@dataclass(frozen=True)
class Control:
    """A mitigation, where it lives in the code and the tests that prove it.

    Attributes:
        id: e.g. ``C-TUF-ROLLBACK``.
        title: One line.
        description: What it does and why it is enough.
        implemented_in: ``module`` or ``module:qualname`` (checked to exist),
            or a repository path such as ``scripts/start-postgres.sh``.
        tests: pytest node ids (``tests/x/test_y.py::test_z``); a node id
            without parameters stands for all of its parametrized cases.
    """

    id: str
    title: str
    description: str
    implemented_in: tuple[str, ...]
    tests: tuple[str, ...]


@dataclass(frozen=True)
class Threat:
    """One threat against an element or a flow.

    Attributes:
        id: e.g. ``AGT-ROLLBACK`` (cited in code comments).
        title: One line.
        category: STRIDE letter or patient safety.
        targets: Element and/or flow ids it applies to.
        description: The attack or hazard and its consequence.
        before: Risk without the controls.
        after: Residual risk with them.
        controls: Control ids.
        cvss: Optional CVSS v3.1 vector of the unmitigated threat.
        acceptance: Why a residual risk outside the acceptable band
            (:attr:`Risk.acceptable`) is accepted anyway, and what would lower
            it; ``None`` when the residual risk is acceptable by itself. The
            traceability check fails on an unacceptable residual risk without it.
    """

    id: str
    title: str
    category: Category
    targets: tuple[str, ...]
    description: str
    before: Risk
    after: Risk
    controls: tuple[str, ...]
    cvss: str | None = None
    acceptance: str | None = None


@dataclass(frozen=True)
class ThreatModel:
    """The whole model; :meth:`validate` checks it is closed under references."""

    name: str
    boundaries: tuple[Boundary, ...]
    elements: tuple[Element, ...]
    flows: tuple[Flow, ...]
    threats: tuple[Threat, ...]
    controls: tuple[Control, ...]
    assumptions: tuple[str, ...] = field(default_factory=tuple)

    def element(self, id_: str) -> Element:
        """The element with ``id_``."""
        return _one(self.elements, id_, "element")

    def control(self, id_: str) -> Control:
        """The control with ``id_``."""
        return _one(self.controls, id_, "control")

    def threat(self, id_: str) -> Threat:
        """The threat with ``id_``."""
        return _one(self.threats, id_, "threat")

    def crossing(self, flow: Flow) -> bool:
        """Whether ``flow`` crosses a trust boundary."""
        return self.element(flow.source).boundary != self.element(flow.target).boundary

    def validate(self) -> None:
        """Check ids are unique and every reference resolves.

        Raises:
            ThreatModelError: Naming every dangling reference or duplicate.
        """
        problems: list[str] = []
        for kind, items in (
            ("boundary", self.boundaries),
            ("element", self.elements),
            ("flow", self.flows),
            ("threat", self.threats),
            ("control", self.controls),
        ):
            problems += _duplicates(kind, (i.id for i in items))
        boundaries = {b.id for b in self.boundaries}
        elements = {e.id for e in self.elements}
        flows = {f.id for f in self.flows}
        controls = {c.id for c in self.controls}
        for e in self.elements:
            if e.boundary not in boundaries:
                problems.append(f"element {e.id}: unknown boundary {e.boundary}")
        for f in self.flows:
            for end in (f.source, f.target):
                if end not in elements:
                    problems.append(f"flow {f.id}: unknown element {end}")
        for t in self.threats:
            for target in t.targets:
                if target not in elements and target not in flows:
                    problems.append(f"threat {t.id}: unknown target {target}")
            for c in t.controls:
                if c not in controls:
                    problems.append(f"threat {t.id}: unknown control {c}")
        if problems:
            raise ThreatModelError(
                f"threat model {self.name} is inconsistent: " + "; ".join(problems)
            )


_T = TypeVar("_T", Boundary, Element, Flow, Threat, Control)


def _one(items: Iterable[_T], id_: str, kind: str) -> _T:
    for item in items:
        if item.id == id_:
            return item
    raise ThreatModelError(f"no {kind} {id_!r} in the threat model")


def _duplicates(kind: str, ids: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for i in ids:
        if i in seen:
            out.append(f"duplicate {kind} id {i}")
        seen.add(i)
    return out
