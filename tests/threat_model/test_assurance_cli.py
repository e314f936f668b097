"""``pumpguard assurance sast|build``, through the click group as the umbrella runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_package import RELEASE, WHEN, Inputs
from test_package import inputs as inputs

from threat_model.assurance_cli import assurance
from tm_support import GroupResult, run_group, small_model


@pytest.fixture
def cli_inputs(inputs: Inputs, monkeypatch: pytest.MonkeyPatch) -> Inputs:
    """The CLI builds from the catalogue and the project tree; use the small ones here."""
    import threat_model.package as package

    monkeypatch.setattr(package, "_catalogue", small_model)
    monkeypatch.setattr(package, "default_path", lambda: inputs.src)
    return inputs


def _src(tmp_path: Path, text: str) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "mod.py").write_text(text, encoding="utf-8")
    return src


def test_sast_clean_tree_exits_0_with_json(tmp_path: Path) -> None:
    src = _src(tmp_path, "# Bandit B404: fixed argv only.\nimport subprocess  # nosec B404\n")
    result = run_group(assurance, "sast", src, "--out", tmp_path / "out", "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["ok"] is True and doc["suppressions"] == 1
    assert sorted(Path(p).name for p in doc["outputs"]) == [
        "bandit.json",
        "bandit.sarif",
        "nosec.json",
        "nosec.md",
    ]


def test_sast_unexplained_nosec_exits_5(tmp_path: Path) -> None:
    src = _src(tmp_path, "import subprocess  # nosec\n")
    result = run_group(assurance, "sast", src, "--out", tmp_path / "out")
    assert result.code == 5
    assert "mod.py:1: unexplained # nosec" in result.out
    assert "static analysis of" in result.err


def test_build_writes_the_package_and_summarises_it(cli_inputs: Inputs) -> None:
    out = cli_inputs.work / "package.zip"
    result = _build(cli_inputs, "--out", out, "--junit", cli_inputs.junit, "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["release"] == RELEASE and doc["recorded_at"] == WHEN
    assert doc["open"]["known_exploited"] == 1 and doc["open"]["threats_not_acceptable"] == 1
    assert doc["test_results_given"] is True


def test_build_unknown_release_exits_4(cli_inputs: Inputs) -> None:
    result = _build(cli_inputs, "--out", cli_inputs.work / "x.zip", release="sigma-spectrum/2.0.0")
    assert result.code == 4 and "not published" in result.err


def test_build_needs_exactly_one_source(cli_inputs: Inputs) -> None:
    result = run_group(
        assurance, "build", "--release", RELEASE, "--root", cli_inputs.root,
        "--db", cli_inputs.db, "--out", cli_inputs.work / "x.zip",
    )  # fmt: skip
    assert result.code == 2 and "exactly one of --repo and --server" in result.out


def _build(inputs: Inputs, *args: str | Path, release: str = RELEASE) -> GroupResult:
    return run_group(
        assurance, "build", "--release", release, "--repo", inputs.repo, "--root", inputs.root,
        "--db", inputs.db, "--recorded-at", WHEN, *args,
    )  # fmt: skip
