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
from threat_model.check import REPO_ROOT
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


def test_make_test_checks_every_linked_test_against_the_suites_own_junit() -> None:
    # Every linked test of the real model is checked against the outcomes of
    # the suite's own run: `make test` writes build/junit.xml (pytest-xdist
    # merges the workers' results into it) and then runs the check on it, so
    # a linked test that is deleted, skipped or failing fails `make test`.
    # No test re-runs the linked tests in a nested pytest; the broken cases
    # below prove on small nested runs that the check catches each of them.
    recipe = _make_recipe("test")
    pytest_line = next(i for i, line in enumerate(recipe) if " -m pytest " in line)
    check_line = next(i for i, line in enumerate(recipe) if "threats check" in line)

    assert "--junitxml=build/junit.xml" in recipe[pytest_line]
    assert recipe[check_line].endswith("pumpguard threats check --junit build/junit.xml")
    assert pytest_line < check_line
    # Nothing deselects or skips tests on the way (no -k, -m, --deselect, -x).
    args = recipe[pytest_line].split(" -m pytest ", 1)[1].split()
    assert not {"-k", "-m", "--deselect", "-x", "--lf"} & set(args)


def _make_recipe(target: str) -> list[str]:
    """The command lines of ``target`` in the repository's Makefile."""
    lines = (REPO_ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def _junit_of(tmp_path: Path, *node_ids: str) -> Path:
    xml = tmp_path / "junit.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
         *node_ids],
        cwd=REPO_ROOT, capture_output=True, check=False, timeout=300,
    )  # fmt: skip
    return xml


# One real linked test of the traversal control: the small nested run below.
TRAVERSAL_TEST = (
    "tests/pumpguard/test_release_contract.py::test_split_target_path_rejects_other_shapes"
)


def test_a_deleted_linked_test_fails_the_check_with_a_real_junit(
    cli: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A real run of one of the traversal control's tests, then the control
    # names that test and one that was deleted (it is in no file any more).
    model = _sub_model(("AGT-TRAVERSAL",))
    assert TRAVERSAL_TEST in model.controls[0].tests
    junit = _junit_of(tmp_path, TRAVERSAL_TEST)
    gone = "tests/device_agent/test_tuf_client.py::test_rejects_traversal_deleted"
    control = dataclasses.replace(model.controls[0], tests=(TRAVERSAL_TEST, gone))
    _use_model(monkeypatch, dataclasses.replace(model, controls=(control,)))

    r = cli("threats", "check", "--junit", junit)

    assert r.code == 5
    assert "1 threats, 1 controls, 2 tests linked, 1 passed" in r.out
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
