"""``pumpguard threats``: check, list and report, on the real model and on broken ones."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import pumpguard.cli
import threat_model.cli
from repo_support import CliResult
from threat_model.catalogue import build_model
from threat_model.check import REPO_ROOT, trace
from threat_model.model import Control, ThreatModel

Run = Callable[..., CliResult]


@pytest.fixture
def cli(run_cli: Run, monkeypatch: pytest.MonkeyPatch) -> Run:
    """``pumpguard`` with the ``threats`` group (the umbrella may not list it yet)."""
    monkeypatch.setitem(
        pumpguard.cli._COMPONENTS,
        "threats",
        ("threat_model.cli:threats", "Check, list and report the threat model."),
    )
    return run_cli


def _use_model(monkeypatch: pytest.MonkeyPatch, model: ThreatModel) -> None:
    monkeypatch.setattr(threat_model.cli, "build_model", lambda: model)


def _sub_model(threat_ids: tuple[str, ...], extra_test: str | None = None) -> ThreatModel:
    """The real catalogue cut down to ``threat_ids`` and their controls.

    ``extra_test`` is linked to the first of those controls as well.
    """
    model = build_model()
    threats = tuple(t for t in model.threats if t.id in threat_ids)
    used = {c for t in threats for c in t.controls}
    controls = [c for c in model.controls if c.id in used]
    if extra_test is not None:
        controls[0] = dataclasses.replace(controls[0], tests=(*controls[0].tests, extra_test))
    return dataclasses.replace(model, threats=threats, controls=tuple(controls))


def test_the_real_model_passes_the_static_check(cli: Run) -> None:
    r = cli("threats", "check", "--json")

    assert r.code == 0, r.out + r.err
    summary = json.loads(r.out)
    model = build_model()
    assert summary == {
        "ok": True,
        "source": "static (no test results)",
        "threats": len(model.threats),
        "controls": len(model.controls),
        "tests": len({t for c in model.controls for t in c.tests}),
        "passed": 0,
        "problems": [],
    }


def test_real_linked_tests_pass_when_run() -> None:
    # The real catalogue's entries for a sample of threats whose node ids cover
    # the hard cases (the agent's attack matrix, ids with spaces and quotes,
    # server tests parametrized by database), run for real with pytest. The
    # whole model is checked the same way by `make test` against the suite's
    # own JUnit file. The threats left out are still cited in the code, which
    # is the only kind of problem allowed here.
    model = _sub_model(("TUF-ROLLBACK", "AGT-TRAVERSAL", "SRV-REPLAY"))

    result = trace(model, run=True)

    assert result.source == "pytest run"
    assert len(result.rows) == sum(
        len(model.control(c).tests) for t in model.threats for c in t.controls
    )
    assert {r.status for r in result.rows} == {"passed"}
    assert [p for p in result.problems if "is not in the model" not in p] == []


def _junit_of(tmp_path: Path, *node_ids: str) -> Path:
    xml = tmp_path / "junit.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
         *node_ids],
        cwd=REPO_ROOT, capture_output=True, check=False, timeout=300,
    )  # fmt: skip
    return xml


def test_a_deleted_linked_test_fails_the_check_with_a_real_junit(
    cli: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A real run of the traversal control's tests, then the model names a test
    # that was deleted (it is in no file any more).
    model = _sub_model(("AGT-TRAVERSAL",))
    junit = _junit_of(tmp_path, *{t for c in model.controls for t in c.tests})
    gone = "tests/device_agent/test_tuf_client.py::test_rejects_traversal_deleted"
    _use_model(monkeypatch, _sub_model(("AGT-TRAVERSAL",), extra_test=gone))

    r = cli("threats", "check", "--junit", junit)

    assert r.code == 5
    linked = len({t for c in model.controls for t in c.tests}) + 1
    assert f"1 threats, 1 controls, {linked} tests linked, {linked - 1} passed" in r.out
    assert [line for line in r.out.splitlines() if line.startswith("problem: test ")] == [
        f"problem: test {gone} does not exist (control C-TARGET-PATH)"
    ]
    assert "error: traceability check failed:" in r.err


def test_a_failing_linked_test_fails_the_check(
    cli: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "tests" / "test_broken.py"
    broken.parent.mkdir()
    broken.write_text("def test_guard_holds():\n    assert 1 == 2\n")
    node = "tests/test_broken.py::test_guard_holds"
    model = build_model()
    control = Control("C-X", "x", "x", ("tests/test_broken.py",), (node,))
    threat = dataclasses.replace(model.threats[0], controls=("C-X",))
    _use_model(monkeypatch, dataclasses.replace(model, threats=(threat,), controls=(control,)))
    monkeypatch.setattr(threat_model.cli, "REPO_ROOT", tmp_path)

    r = cli("threats", "check", "--run", "--json")

    assert r.code == 5
    out = json.loads(r.out)
    assert out["ok"] is False
    assert out["tests"] == 1
    assert out["passed"] == 0
    assert out["problems"] == [f"test {node} failed: assert 1 == 2 (control C-X)"]


def test_junit_and_run_together_are_a_usage_error(cli: Run, tmp_path: Path) -> None:
    junit = tmp_path / "j.xml"
    junit.write_text("<testsuites/>")

    r = cli("threats", "check", "--junit", junit, "--run")

    assert r.code == 2
    assert "not both" in r.err


def test_list_shows_every_threat_with_its_risks_and_controls(cli: Run) -> None:
    model = build_model()

    r = cli("threats", "list")
    rows = json.loads(cli("threats", "list", "--json").out)

    assert r.code == 0
    for t in model.threats:
        assert t.id in r.out
        assert ", ".join(t.controls) in r.out
    assert [row["id"] for row in rows] == [t.id for t in model.threats]
    infusion = next(row for row in rows if row["id"] == "MED-INFUSION")
    assert infusion["before"]["level"] == "high"
    assert infusion["after"]["acceptable"] is True
    assert infusion["category"] == "patient-safety"


def test_report_writes_the_files_it_lists(cli: Run, tmp_path: Path) -> None:
    r = cli("threats", "report", "--out", tmp_path / "report")

    assert r.code == 0, r.err
    written = [Path(line) for line in r.out.splitlines()]
    assert tmp_path / "report" / "dfd.svg" in written
    assert all(p.is_file() for p in written)


@pytest.mark.parametrize("command", ["check", "list", "report"])
def test_every_command_has_help(cli: Run, command: str) -> None:
    r = cli("threats", command, "--help")

    assert r.code == 0
    assert "Usage:" in r.out
