"""``threat_model.sast``: bandit, SARIF and the register of ``# nosec`` suppressions."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from threat_model._sarif import validate_sarif
from threat_model.errors import AssuranceError
from threat_model.sast import SastError, default_path, require_clean, run_sast

CLEAN = """
# Bandit B404: fixed argv below, no shell.
import subprocess  # nosec B404


def run(argv: list[str]) -> None:
    # Bandit B603: argv comes from our own config,
    # never from the network.
    subprocess.run(argv, check=True)  # nosec B603


TOKEN_ENV = "APP_TOKEN"  # noqa: S105  # nosec B105  # the variable's name, not a secret
TEXT = "# nosec inside a string is not a suppression"
"""


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def test_explained_suppressions_pass(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", {"app/run.py": CLEAN, "tests/test_x.py": "eval('1')\n"})
    result = run_sast(src, tmp_path / "out")
    require_clean(result)
    assert result.files_scanned == 1  # tests/ is not scanned
    register = json.loads((tmp_path / "out" / "nosec.json").read_text())["suppressions"]
    assert [(s["file"], s["line"], s["rules"]) for s in register] == [
        ("app/run.py", 3, ["B404"]),
        ("app/run.py", 9, ["B603"]),
        ("app/run.py", 12, ["B105"]),
    ]
    assert register[1]["reason"] == (
        "Bandit B603: argv comes from our own config, never from the network."
    )
    assert register[2]["reason"] == "the variable's name, not a secret"
    assert "| `app/run.py` | 9 | B603 |" in (tmp_path / "out" / "nosec.md").read_text()


def test_unexplained_nosec_fails(tmp_path: Path) -> None:
    bad = CLEAN + textwrap.dedent(
        """
        def more(argv: list[str]) -> None:
            subprocess.run(argv)  # nosec
            x = 1
            subprocess.run(argv)  # nosec B603
            # a reason, but for what?
            subprocess.run(argv)  # nosec because trusted
        """
    )
    src = _tree(tmp_path / "src", {"app/run.py": bad})
    result = run_sast(src, tmp_path / "out")
    assert not result.ok
    problems = {s.line: s.problems for s in result.unexplained}
    assert sorted(problems) == [16, 18, 20]
    assert "names no bandit rule id" in problems[16][0]
    assert "gives no reason" in problems[18][0]
    assert "not bandit rule ids" in " ".join(problems[20])
    with pytest.raises(SastError, match=r"app/run\.py:16: unexplained # nosec") as err:
        require_clean(result)
    assert err.value.exit_code == 5


def test_medium_finding_fails(tmp_path: Path) -> None:
    src = _tree(
        tmp_path / "src",
        {"app/load.py": "import pickle  # noqa\n\n\ndef f(data):\n    return pickle.loads(data)\n"},
    )
    result = run_sast(src, tmp_path / "out")
    assert [(f.rule, f.severity) for f in result.findings] == [("B403", "LOW"), ("B301", "MEDIUM")]
    assert [f.rule for f in result.blocking] == ["B301"]
    with pytest.raises(SastError, match=r"app/load\.py:5: B301 medium severity"):
        require_clean(result)
    sarif = json.loads((tmp_path / "out" / "bandit.sarif").read_text())
    validate_sarif(sarif, "bandit.sarif")
    (run,) = sarif["runs"]
    assert [r["ruleId"] for r in run["results"]] == ["B403", "B301"]
    assert [r["level"] for r in run["results"]] == ["note", "warning"]
    location = run["results"][1]["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "app/load.py"
    assert location["region"]["startLine"] == 5
    assert run["tool"]["driver"]["rules"][run["results"][1]["ruleIndex"]]["id"] == "B301"


def test_outputs_are_reproducible_and_relative(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", {"app/load.py": "import pickle  # noqa\n"})
    run_sast(src, tmp_path / "a")
    run_sast(src, tmp_path / "b")
    for name in ("bandit.json", "bandit.sarif", "nosec.json", "nosec.md"):
        data = (tmp_path / "a" / name).read_bytes()
        assert data == (tmp_path / "b" / name).read_bytes()
        assert str(tmp_path).encode() not in data
    assert "generated_at" not in json.loads((tmp_path / "a" / "bandit.json").read_text())


def test_project_tree_passes(tmp_path: Path) -> None:
    result = run_sast(default_path(), tmp_path)
    assert result.ok, result.problems()
    files = {s.file for s in result.suppressions}
    assert "device_agent/agent.py" in files and "threat_model/_dot.py" in files
    assert not any(f.startswith(("tests/", "scripts/", "bench/")) for f in files)


def test_nothing_to_analyse_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no python here")
    with pytest.raises(AssuranceError, match="no Python files"):
        run_sast(tmp_path, tmp_path / "out")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"version": "2.0.0", "runs": []}, "version"),
        ({"version": "2.1.0", "runs": []}, "runs"),
        ({"version": "2.1.0", "runs": [{"tool": {"driver": {}}, "results": []}]}, "driver.name"),
        (
            {
                "version": "2.1.0",
                "runs": [{"tool": {"driver": {"name": "x"}}, "results": [{"message": {}}]}],
            },
            "message.text",
        ),
    ],
)
def test_invalid_sarif_is_refused(doc: dict[str, object], message: str) -> None:
    with pytest.raises(AssuranceError, match=message):
        validate_sarif(doc, "x.sarif")
