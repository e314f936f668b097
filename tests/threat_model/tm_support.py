"""Support for the report, SAST and package tests: tools, a small model, Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pumpguard.errors import PumpguardError
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
from threat_model.trace import TraceResult, TraceRow


def require_tool(name: str) -> str:
    """The path of system tool ``name``; skip the test without it (fail under CI=true)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (required under CI=true)")
        pytest.skip(message)
    return path


def chromium_dom(path: Path) -> str:
    """The DOM of ``path`` as headless Chromium renders it."""
    browser = require_tool("chromium")
    done = subprocess.run(
        [browser, "--headless", "--disable-gpu", "--no-sandbox", "--dump-dom", path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _risk(e: int, s: int) -> Risk:
    return Risk(Exploitability(e), Severity(s))


def small_model() -> ThreatModel:
    """A small but complete model: signing to pumps, one open residual risk."""
    return ThreatModel(
        name="pumpguard test model",
        boundaries=(
            Boundary("release", "Release engineering", "Offline signing."),
            Boundary("cloud", "Update service", "Internet-facing."),
            Boundary("pump", "Infusion pump", "Hospital network & device."),
        ),
        elements=(
            Element("engineer", "Release engineer", ElementKind.ACTOR, "release", "Signs."),
            Element("hsm", "HSM", ElementKind.DEVICE, "release", "Holds the keys."),
            Element("signer", "Signer", ElementKind.PROCESS, "release", "Signs releases."),
            Element("server", "Update server", ElementKind.PROCESS, "cloud", "Serves TUF."),
            Element("db", "Database", ElementKind.STORE, "cloud", "State."),
            Element("agent", "Pump agent", ElementKind.PROCESS, "pump", "Installs <updates>."),
            Element("boot", "Bootloader", ElementKind.DEVICE, "pump", "Boots a slot."),
        ),
        flows=(
            Flow("F1", "engineer", "signer", "release bundle", "cli"),
            Flow("F2", "signer", "hsm", "signing request", "PKCS#11"),
            Flow("F3", "signer", "server", "signed metadata & targets", "HTTPS"),
            Flow("F4", "server", "db", "releases, devices", "SQL"),
            Flow("F5", "server", "agent", "TUF metadata, firmware", "HTTPS"),
            Flow("F6", "agent", "boot", "boot target", "bootenv"),
            Flow("F7", "agent", "server", "check-in report", "HTTPS"),
        ),
        threats=(
            Threat(
                "TUF-ROLLBACK",
                "Rollback to an old release",
                Category.TAMPERING,
                ("F5",),
                'An attacker serves an older, "vulnerable" release.',
                _risk(5, 5),
                _risk(1, 5),
                ("C-ROLLBACK",),
            ),
            Threat(
                "SAFE-MANY",
                "One bad release harms many patients",
                Category.PATIENT_SAFETY,
                ("signer", "F3"),
                "A defective release reaches the whole fleet.",
                _risk(3, 5),
                _risk(2, 5),
                ("C-TWO-PERSON", "C-STAGED"),
            ),
            Threat(
                "DB-LEAK",
                "Database disclosure",
                Category.INFORMATION_DISCLOSURE,
                ("db",),
                "Device keys leak.",
                _risk(4, 2),
                _risk(3, 2),
                ("C-STAGED",),
                cvss="CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N",
            ),
        ),
        controls=(
            Control(
                "C-ROLLBACK",
                "TUF and release counter anti-rollback",
                "Versions only go up.",
                ("device_agent.agent",),
                ("tests/device_agent/test_agent_attacks.py::test_rollback_refused",),
            ),
            Control(
                "C-TWO-PERSON",
                "Two-person release rule",
                "Threshold 2.",
                ("signer.bundle:sign_bundle",),
                ("tests/signer/test_bundle.py::test_threshold",),
            ),
            Control(
                "C-STAGED",
                "Staged rollouts",
                "A few pumps first.",
                ("update_server",),
                (
                    "tests/update_server/test_rollout.py::test_stage",
                    "tests/update_server/test_rollout.py::test_halt",
                ),
            ),
        ),
        assumptions=("Root keys stay offline.",),
    )


def node_to_junit(node: str) -> tuple[str, str]:
    """``tests/a/test_b.py::test_c`` -> (classname, name) as pytest's JUnit report has them."""
    path, _, name = node.partition("::")
    return path.removesuffix(".py").replace("/", "."), name


def write_junit(path: Path, outcomes: dict[str, str]) -> Path:
    """A pytest-like JUnit report: node id -> ``passed``, ``failed`` or ``skipped``."""
    cases = []
    for node, outcome in sorted(outcomes.items()):
        classname, name = node_to_junit(node)
        inner = {
            "passed": "",
            "failed": '<failure message="assert 1 == 2">trace</failure>',
            "skipped": '<skipped message="no softhsm" />',
        }[outcome]
        cases.append(
            f'<testcase classname="{classname}" name="{name}" time="0.01">{inner}</testcase>'
        )
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" '
        f'tests="{len(cases)}">' + "".join(cases) + "</testsuite></testsuites>",
        encoding="utf-8",
    )
    return path


def fake_trace(model: ThreatModel, *, junit: Path | None = None, **_: object) -> TraceResult:
    """Stands in for ``threat_model.check.trace`` (the package, not the check, is under test)."""
    from threat_model._junit import read_junit
    from threat_model.report import planned_rows

    statuses: dict[str, str] = {}
    if junit is not None:
        _, summary = read_junit(junit)
        statuses = {c.test: c.status for c in summary.not_passed}
        # read_junit lists only the cases that did not pass; the rest passed.
        import xml.etree.ElementTree as ET

        for case in ET.parse(junit).getroot().iter("testcase"):
            key = f"{case.get('classname')}::{case.get('name')}"
            statuses.setdefault(key, "passed")
    rows = []
    for row in planned_rows(model):
        key = "::".join(node_to_junit(row.test))
        status = statuses.get(key, "missing") if row.test else "missing"
        rows.append(TraceRow(row.threat, row.control, row.implemented_in, row.test, status))
    problems = tuple(f"{r.test}: {r.status}" for r in rows if r.status in ("failed", "missing"))
    return TraceResult(tuple(rows), problems, f"junit {junit}")


def install_fake_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``threat_model.check`` resolve to :func:`fake_trace`."""
    module = types.ModuleType("threat_model.check")
    module.trace = fake_trace  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "threat_model.check", module)


@dataclass(frozen=True)
class GroupResult:
    code: int
    out: str
    err: str


def run_group(group: click.Group, *args: str | Path) -> GroupResult:
    """Run a click group as the umbrella CLI does: a PumpguardError exits with its code."""
    runner = CliRunner()
    result = runner.invoke(group, [str(a) for a in args], catch_exceptions=True)
    if isinstance(result.exception, PumpguardError):
        return GroupResult(result.exception.exit_code, result.output, f"error: {result.exception}")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return GroupResult(result.exit_code, result.output, "")
