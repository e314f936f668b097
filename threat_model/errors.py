"""Errors of the ``threat_model`` package.

Every error the package raises on purpose derives from :class:`ThreatModelError`,
itself a :class:`pumpguard.errors.PumpguardError`, so the umbrella CLI prints it
as one line and exits with its code.
"""

from __future__ import annotations

from pumpguard.errors import PumpguardError

__all__ = ["AssuranceError", "ThreatModelError", "TraceabilityError"]


class ThreatModelError(PumpguardError):
    """The threat model itself is inconsistent (a dangling reference, a duplicate id)."""

    exit_code = 2


class TraceabilityError(ThreatModelError):
    """A threat lacks a control, a control lacks a test, or a test is missing or failed.

    Attributes:
        problems: Every problem found, one line each.
    """

    exit_code = 5

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


class AssuranceError(ThreatModelError):
    """A report, the static analysis or the assurance package could not be built."""

    exit_code = 1
