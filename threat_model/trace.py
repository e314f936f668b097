"""The traceability result: threat -> control -> implementation -> test -> outcome.

Produced by :func:`threat_model.check.trace` and rendered by
:mod:`threat_model.report` and the assurance package.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TEST_STATUSES", "TraceResult", "TraceRow"]

#: What can be known about a named test.
TEST_STATUSES = ("passed", "failed", "skipped", "missing", "not-run")


@dataclass(frozen=True)
class TraceRow:
    """One line of the traceability matrix (one test of one control of one threat)."""

    threat: str
    control: str
    implemented_in: tuple[str, ...]
    test: str
    status: str  # one of TEST_STATUSES


@dataclass(frozen=True)
class TraceResult:
    """The whole matrix and every problem found.

    Attributes:
        rows: The matrix, in model order.
        problems: One line per problem (a threat without control, a control
            without test, a missing or failed test, an unknown implementation,
            a threat id cited in the code but absent from the model).
        source: Where the outcomes come from (``junit FILE`` or ``pytest run``).
    """

    rows: tuple[TraceRow, ...]
    problems: tuple[str, ...]
    source: str

    @property
    def ok(self) -> bool:
        """No problem at all."""
        return not self.problems
