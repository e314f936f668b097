"""Reading a JUnit XML test report (pytest's ``--junitxml``) into a summary."""

from __future__ import annotations

import re

# Bandit B405: the report is checked to declare no DOCTYPE (so no entity can be
# defined or expanded) before ElementTree parses it.
import xml.etree.ElementTree as ET  # nosec B405
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pumpguard.fsutil import FileTooLargeError, read_capped
from threat_model.errors import AssuranceError

__all__ = ["JunitCase", "JunitError", "JunitSummary", "parse_junit", "read_junit"]

#: Largest report read: a whole-suite run is a few MiB.
_MAX_BYTES = 64 << 20
_DECLARATION = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


class JunitError(AssuranceError):
    """The JUnit file is missing, unreadable or not a JUnit report."""

    exit_code = 2


@dataclass(frozen=True)
class JunitCase:
    """One test that did not pass.

    Attributes:
        test: ``classname::name`` as the report names it.
        status: ``failed``, ``error`` or ``skipped``.
        message: The failure or skip message's first line.
    """

    test: str
    status: str
    message: str


@dataclass(frozen=True)
class JunitSummary:
    """Counts of a JUnit report and the tests that did not pass.

    Attributes:
        tests: Test cases in the report.
        passed: Passed.
        failed: Failed (an assertion).
        errors: Errored (a fixture or collection error).
        skipped: Skipped.
        not_passed: The failed, errored and skipped cases, sorted.
    """

    tests: int
    passed: int
    failed: int
    errors: int
    skipped: int
    not_passed: tuple[JunitCase, ...]

    @property
    def ok(self) -> bool:
        """At least one test, none failed or errored."""
        return self.tests > 0 and not (self.failed or self.errors)

    def to_json(self) -> dict[str, Any]:
        """The summary as a JSON object."""
        return {
            "ok": self.ok,
            "tests": self.tests,
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "skipped": self.skipped,
            "not_passed": [
                {"test": c.test, "status": c.status, "message": c.message} for c in self.not_passed
            ],
        }


def parse_junit(path: Path) -> tuple[bytes, ET.Element]:
    """Read and parse a JUnit XML report safely.

    Returns:
        The file's bytes and its root element (``testsuites`` or ``testsuite``).

    Raises:
        JunitError: The file is missing, too large, declares a DOCTYPE, is not
            well-formed XML, or is not a JUnit report.
    """
    try:
        data = read_capped(path, _MAX_BYTES, f"JUnit file {path}")
    except FileTooLargeError as e:
        raise JunitError(str(e)) from e
    except OSError as e:
        raise JunitError(f"cannot read JUnit file {path}: {e.strerror or e}") from e
    if b"\x00" in data:
        # UTF-16 or UTF-32 would hide a DOCTYPE from the byte search below.
        raise JunitError(f"JUnit file {path} is not UTF-8 XML")
    if _DECLARATION.search(data):
        raise JunitError(f"JUnit file {path} declares a DOCTYPE or entity; refused")
    try:
        # Bandit B314: no DOCTYPE (refused above), so no entity expansion or
        # external reference is possible.
        root = ET.fromstring(data)  # noqa: S314  # nosec B314
    except ET.ParseError as e:
        raise JunitError(f"JUnit file {path} is not well-formed XML: {e}") from e
    if root.tag not in ("testsuites", "testsuite"):
        raise JunitError(f"JUnit file {path}: root element is <{root.tag}>, not <testsuites>")
    return data, root


def read_junit(path: Path) -> tuple[bytes, JunitSummary]:
    """Read and summarise a JUnit XML report.

    Returns:
        The file's bytes and its summary.

    Raises:
        JunitError: As :func:`parse_junit`.
    """
    data, root = parse_junit(path)
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    cases: list[JunitCase] = []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        status = "passed"
        for child, kind in (("failure", "failed"), ("error", "errors"), ("skipped", "skipped")):
            found = case.find(child)
            if found is not None:
                status = kind
                message = (found.get("message") or found.text or "").strip().splitlines()
                label = {"errors": "error"}.get(kind, kind)
                cases.append(JunitCase(name, label, message[0][:300] if message else ""))
                break
        counts[status] += 1
    return data, JunitSummary(
        tests=sum(counts.values()),
        passed=counts["passed"],
        failed=counts["failed"],
        errors=counts["errors"],
        skipped=counts["skipped"],
        not_passed=tuple(sorted(cases, key=lambda c: (c.status, c.test))),
    )
