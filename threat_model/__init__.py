"""threat_model: the threat model of pumpguard as code, and its traceability.

The model (:mod:`threat_model.model`, filled in by :mod:`threat_model.catalogue`)
names the system's elements, trust boundaries and data flows, the threats
against them with a risk before and after controls, and the controls with
where they are implemented and the pytest node ids that prove them.
:func:`trace` checks all of it against the code and the test results
(``pumpguard threats check``); reports, static analysis and the premarket
assurance package build on it (``pumpguard threats report``,
``pumpguard assurance``). See ``docs/threat-model.md``.

The names are imported on first use (:mod:`pumpguard.lazy`), except
:func:`trace` and :func:`require_ok`: the function :func:`trace` shares its
name with the submodule :mod:`threat_model.trace`, which the import system
binds on the package when it loads it, so the function is bound here, after
the submodule (both are standard library only).
"""

from typing import TYPE_CHECKING

from threat_model.check import require_ok, trace

if TYPE_CHECKING:
    from threat_model.catalogue import ASSUMPTIONS, build_model
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
else:
    from pumpguard.lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "ASSUMPTIONS": "threat_model.catalogue",
            "build_model": "threat_model.catalogue",
            "AssuranceError": "threat_model.errors",
            "ThreatModelError": "threat_model.errors",
            "TraceabilityError": "threat_model.errors",
            "Boundary": "threat_model.model",
            "Category": "threat_model.model",
            "Control": "threat_model.model",
            "Element": "threat_model.model",
            "ElementKind": "threat_model.model",
            "Exploitability": "threat_model.model",
            "Flow": "threat_model.model",
            "Risk": "threat_model.model",
            "Severity": "threat_model.model",
            "Threat": "threat_model.model",
            "ThreatModel": "threat_model.model",
            "TEST_STATUSES": "threat_model.trace",
            "TraceResult": "threat_model.trace",
            "TraceRow": "threat_model.trace",
        },
    )

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
