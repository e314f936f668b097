"""threat_model: the threat model of pumpguard as code, and its traceability.

The model (:mod:`threat_model.model`, filled in by :mod:`threat_model.catalogue`)
names the system's elements, trust boundaries and data flows, the threats
against them with a risk before and after controls, and the controls with
where they are implemented and the pytest node ids that prove them.
:func:`trace` checks all of it against the code and the test results
(``pumpguard threats check``); reports, static analysis and the premarket
assurance package build on it (``pumpguard threats report``,
``pumpguard assurance``). See ``docs/threat-model.md``.
"""

from threat_model.catalogue import ASSUMPTIONS, build_model
from threat_model.check import require_ok, trace
from threat_model.errors import AssuranceError, ThreatModelError, TraceabilityError
from threat_model.model import (
    Boundary,
    Category,
    Control,
    Element,
    ElementKind,
    Exploitability,
    Flow,
    Risk,
    Severity,
    Threat,
    ThreatModel,
)
from threat_model.trace import TEST_STATUSES, TraceResult, TraceRow

__all__ = [
    "ASSUMPTIONS",
    "TEST_STATUSES",
    "AssuranceError",
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
    "ThreatModelError",
    "TraceResult",
    "TraceRow",
    "TraceabilityError",
    "build_model",
    "require_ok",
    "trace",
]
