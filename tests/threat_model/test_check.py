"""The traceability check against small repositories built in tmp_path.

Each test builds a tiny repository (a package with the implementation, a test
file with passing, failing, skipped and parametrized tests) and a model that
links them, then breaks one thing and sees :func:`trace` name it. Test results
come from real pytest runs writing JUnit XML.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from threat_model.check import cited_threat_ids, read_junit, require_ok, trace
from threat_model.errors import ThreatModelError, TraceabilityError
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

# Spelled apart so that the real check, which scans this file for citations,
# does not take the made-up ids below for citations of the real model.
WORD = "thr" + "eat"

TINY_TESTS = """\
import pytest


def test_ok():
    pass


@pytest.mark.parametrize("x", ["a", "b"])
def test_param(x):
    pass


def test_broken():
    assert False, "the control does not hold"


def test_skipped():
    pytest.skip("tool missing")


@pytest.mark.parametrize("x", ["good", "bad"])
def test_half(x):
    assert x == "good"


class TestGroup:
    def test_method(self):
        pass
"""

OK_TESTS = (
    "tests/test_tiny.py::test_ok",
    "tests/test_tiny.py::test_param",
    "tests/test_tiny.py::test_param[a]",
    "tests/test_tiny.py::TestGroup::test_method",
)


@dataclasses.dataclass
class Tiny:
    """A tiny repository: ``<pkg>/mod.py`` and ``tests/test_tiny.py``."""

    root: Path
    pkg: str

    @property
    def test_file(self) -> Path:
        return self.root / "tests" / "test_tiny.py"

    def model(self, *, tests: tuple[str, ...] = OK_TESTS, **threat: object) -> ThreatModel:
        control = Control(
            "C-GUARD",
            "guard",
            "the guard",
            (f"{self.pkg}.mod:Guard.check", f"{self.pkg}.mod", "tests/test_tiny.py"),
            tests,
        )
        t = Threat(
            "TMP-ONE",
            "one",
            Category.TAMPERING,
            ("E-A", "F-AB"),
            "a tampering",
            Risk(Exploitability.REMOTE, Severity.CRITICAL),
            Risk(Exploitability.THEORETICAL, Severity.CRITICAL),
            ("C-GUARD",),
        )
        return ThreatModel(
            name="tiny",
            boundaries=(Boundary("B-1", "one", ""), Boundary("B-2", "two", "")),
            elements=(
                Element("E-A", "a", ElementKind.PROCESS, "B-1", ""),
                Element("E-B", "b", ElementKind.STORE, "B-2", ""),
            ),
            flows=(Flow("F-AB", "E-A", "E-B", "data"),),
            threats=(dataclasses.replace(t, **threat),),  # type: ignore[arg-type]
            controls=(control,),
        )

    def junit(self) -> Path:
        """Run the tiny tests with pytest and return its JUnit XML."""
        xml = self.root / "junit.xml"
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "--rootdir", str(self.root), f"--junitxml={xml}", "tests"],
            cwd=self.root, capture_output=True, check=False, timeout=120,
        )  # fmt: skip
        assert xml.is_file()
        return xml


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tiny:
    # A fresh package name per test: the check imports it, and sys.modules
    # would otherwise hand a later test an earlier test's module.
    pkg = f"tinypkg_{uuid.uuid4().hex[:8]}"
    (tmp_path / pkg).mkdir()
    (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / pkg / "mod.py").write_text(
        f"# The guard against {WORD} TMP-ONE.\n\n\n"
        "class Guard:\n    def check(self):\n        pass\n"
    )
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_tiny.py").write_text(TINY_TESTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return Tiny(tmp_path, pkg)


def test_a_consistent_model_passes_the_static_check(tiny: Tiny) -> None:
    result = trace(tiny.model(), root=tiny.root)

    assert result.problems == ()
    assert result.source == "static (no test results)"
    assert {r.status for r in result.rows} == {"not-run"}
    require_ok(result)


def test_passing_tests_pass_with_a_junit_file_and_with_run(tiny: Tiny) -> None:
    for result in (
        trace(tiny.model(), junit=tiny.junit(), root=tiny.root),
        trace(tiny.model(), run=True, root=tiny.root),
    ):
        assert result.ok, result.problems
        assert [(r.test, r.status) for r in result.rows] == [(t, "passed") for t in OK_TESTS]


def _without_control(tiny: Tiny) -> ThreatModel:
    return tiny.model(controls=())


def _without_tests(tiny: Tiny) -> ThreatModel:
    m = tiny.model()
    return dataclasses.replace(m, controls=(dataclasses.replace(m.controls[0], tests=()),))


def _with_implementation(*specs: str) -> Callable[[Tiny], ThreatModel]:
    def build(tiny: Tiny) -> ThreatModel:
        m = tiny.model()
        resolved = tuple(s.format(pkg=tiny.pkg) for s in specs)
        control = dataclasses.replace(m.controls[0], implemented_in=resolved)
        return dataclasses.replace(m, controls=(control,))

    return build


def _with_tests(*tests: str) -> Callable[[Tiny], ThreatModel]:
    return lambda tiny: tiny.model(tests=tests)


def _citing_an_unknown_id(tiny: Tiny) -> ThreatModel:
    (tiny.root / tiny.pkg / "other.py").write_text(f'"""Also about {WORD}s TMP-ONE, TMP-TWO."""\n')
    return tiny.model()


def _with_deleted_test(tiny: Tiny) -> ThreatModel:
    tiny.test_file.write_text(TINY_TESTS.replace("def test_ok", "def test_renamed"))
    return tiny.model()


def _with_deleted_file(tiny: Tiny) -> ThreatModel:
    tiny.test_file.unlink()
    return tiny.model()


def _with_uncollectable_file(tiny: Tiny) -> ThreatModel:
    tiny.test_file.write_text("import a_module_that_does_not_exist\n" + TINY_TESTS)
    return tiny.model()


def _with_orphan_control(tiny: Tiny) -> ThreatModel:
    m = tiny.model()
    orphan = dataclasses.replace(m.controls[0], id="C-ORPHAN")
    return dataclasses.replace(m, controls=(*m.controls, orphan))


def _with_dangling_control(tiny: Tiny) -> ThreatModel:
    return tiny.model(controls=("C-GUARD", "C-NOWHERE"))


HIGH_RESIDUAL = Risk(Exploitability.HARD, Severity.CATASTROPHIC)  # medium, catastrophic

BROKEN: list[tuple[str, Callable[[Tiny], ThreatModel], str]] = [
    ("threat-without-control", _without_control, f"{WORD} TMP-ONE has no control"),
    ("control-without-test", _without_tests, "control C-GUARD has no test"),
    ("control-without-implementation", _with_implementation(), "names no implementation"),
    ("unknown-symbol", _with_implementation("{pkg}.mod:Guard.nothing"), "has no Guard.nothing"),
    ("unknown-module", _with_implementation("{pkg}.absent"), "cannot import"),
    ("foreign-package", _with_implementation("json:loads"), "not a package of this repository"),
    ("missing-path", _with_implementation("docs/absent.md"), "no such path in the repository"),
    ("path-outside-root", _with_implementation("../outside/x.py"), "no such path"),
    (
        "nonexistent-test",
        _with_tests("tests/test_tiny.py::test_absent"),
        "test tests/test_tiny.py::test_absent does not exist (control C-GUARD)",
    ),
    (
        "nonexistent-case",
        _with_tests("tests/test_tiny.py::test_param[c]"),
        "test tests/test_tiny.py::test_param[c] does not exist",
    ),
    ("deleted-test", _with_deleted_test, "test tests/test_tiny.py::test_ok does not exist"),
    ("deleted-file", _with_deleted_file, "does not exist (no file tests/test_tiny.py)"),
    (
        "cited-id-not-in-model",
        _citing_an_unknown_id,
        f"{WORD} TMP-TWO is cited in tinypkg_",
    ),
    (
        "uncollectable-test-file",
        _with_uncollectable_file,
        "pytest could not collect tests/test_tiny.py",
    ),
    ("orphan-control", _with_orphan_control, "control C-ORPHAN mitigates no threat"),
    ("dangling-control", _with_dangling_control, "unknown control C-NOWHERE"),
    (
        "unacceptable-residual-risk",
        lambda tiny: tiny.model(after=HIGH_RESIDUAL),
        f"{WORD} TMP-ONE: residual risk medium (HARD x CATASTROPHIC) is not acceptable",
    ),
    (
        "residual-above-unmitigated",
        lambda tiny: tiny.model(before=Risk(Exploitability.THEORETICAL, Severity.MINOR)),
        f"{WORD} TMP-ONE: residual risk 4 is above the unmitigated risk 2",
    ),
]


@pytest.mark.parametrize(("build", "expected"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_the_static_check_names_what_is_broken(
    tiny: Tiny, build: Callable[[Tiny], ThreatModel], expected: str
) -> None:
    result = trace(build(tiny), root=tiny.root)

    assert not result.ok
    assert any(expected in p for p in result.problems), result.problems
    with pytest.raises(TraceabilityError) as e:
        require_ok(result)
    assert e.value.problems == list(result.problems)
    assert e.value.exit_code == 5


def test_an_accepted_residual_risk_with_a_rationale_passes(tiny: Tiny) -> None:
    model = tiny.model(after=HIGH_RESIDUAL, acceptance="staged rollouts come next")

    assert trace(model, root=tiny.root).ok


RESULTS: list[tuple[str, str, str]] = [
    ("tests/test_tiny.py::test_broken", "failed", "failed: AssertionError: the control does not"),
    ("tests/test_tiny.py::test_half", "failed", "failed (1 of 2 cases)"),
    ("tests/test_tiny.py::test_half[bad]", "failed", "failed"),
    ("tests/test_tiny.py::test_half[good]", "passed", ""),
    ("tests/test_tiny.py::test_skipped", "skipped", "was skipped, which proves nothing: tool"),
    ("tests/test_tiny.py::TestGroup", "passed", ""),
]


@pytest.mark.parametrize(("test", "status", "expected"), RESULTS, ids=[r[0] for r in RESULTS])
def test_outcomes_come_from_the_junit_file(
    tiny: Tiny, test: str, status: str, expected: str
) -> None:
    result = trace(tiny.model(tests=(test,)), junit=tiny.junit(), root=tiny.root)

    assert [r.status for r in result.rows] == [status]
    if expected:
        assert any(f"test {test} {expected}" in p for p in result.problems), result.problems
    else:
        assert result.ok, result.problems


def test_a_failing_test_fails_the_check_when_run(tiny: Tiny) -> None:
    model = tiny.model(tests=("tests/test_tiny.py::test_ok", "tests/test_tiny.py::test_broken"))

    result = trace(model, run=True, root=tiny.root)

    assert result.source == "pytest run"
    assert [r.status for r in result.rows] == ["passed", "failed"]
    assert len(result.problems) == 1
    assert "test tests/test_tiny.py::test_broken failed" in result.problems[0]


def test_a_test_deleted_after_the_run_is_missing_even_though_the_junit_says_passed(
    tiny: Tiny,
) -> None:
    junit = tiny.junit()
    tiny.test_file.write_text(TINY_TESTS.replace("def test_ok", "def test_renamed"))

    result = trace(tiny.model(), junit=junit, root=tiny.root)

    assert ("tests/test_tiny.py::test_ok", "missing") in [(r.test, r.status) for r in result.rows]
    assert any("test_ok does not exist" in p for p in result.problems)


def test_a_test_added_after_the_run_did_not_run(tiny: Tiny) -> None:
    junit = tiny.junit()
    tiny.test_file.write_text(TINY_TESTS + "\n\ndef test_new():\n    pass\n")

    result = trace(tiny.model(tests=("tests/test_tiny.py::test_new",)), junit=junit, root=tiny.root)

    assert [r.status for r in result.rows] == ["not-run"]
    assert result.problems == ("test tests/test_tiny.py::test_new did not run (control C-GUARD)",)


def test_gaps_are_rows_of_the_matrix(tiny: Tiny) -> None:
    result = trace(_without_control(tiny), root=tiny.root)

    assert [(r.threat, r.control, r.test, r.status) for r in result.rows] == [
        ("TMP-ONE", "", "", "missing")
    ]
    result = trace(_without_tests(tiny), root=tiny.root)
    assert [(r.control, r.test, r.status) for r in result.rows] == [("C-GUARD", "", "missing")]


def test_junit_and_run_together_are_refused(tiny: Tiny) -> None:
    with pytest.raises(ThreatModelError, match="not both"):
        trace(tiny.model(), junit=tiny.root / "x.xml", run=True, root=tiny.root)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not xml", "is not well-formed XML"),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><testsuite/>',
            "declares a DOCTYPE or entity",
        ),
    ],
    ids=["garbage", "doctype"],
)
def test_a_bad_junit_file_is_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "junit.xml"
    path.write_bytes(content)

    with pytest.raises(ThreatModelError, match=message):
        read_junit(path, tmp_path)


def test_junit_cases_of_a_deleted_file_get_a_best_guess_node_id(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("")
    path = tmp_path / "junit.xml"
    path.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_a.TestX" name="test_y[1]"/>'
        '<testcase classname="tests.gone" name="test_z"><skipped message="m"/></testcase>'
        "</testsuite></testsuites>"
    )

    results = read_junit(path, tmp_path)

    assert {node: o.status for node, o in results.items()} == {
        "tests/test_a.py::TestX::test_y[1]": "passed",
        "tests/gone.py::test_z": "skipped",
    }


CITATIONS: list[tuple[str, list[str]]] = [
    (f"# {WORD} AB-CD", ["AB-CD"]),
    (f"({WORD}s AB-CD, EF-GH-2, IJK-L)", ["AB-CD", "EF-GH-2", "IJK-L"]),
    (f"{WORD}s AB-CD and EF-GH", ["AB-CD", "EF-GH"]),
    (f"# the clock is off; {WORD}\n# SRV-X).", ["SRV-X"]),
    (f"# ({WORD}s AB-CD,\n    # EF-GH).", ["AB-CD", "EF-GH"]),
    (f"{WORD.capitalize()} AB-CD is old", ["AB-CD"]),
    (f"{WORD} model AB-CD", []),
    (f"{WORD} X-Y", []),
    (f"{WORD} ab-cd", []),
    (f"non{WORD} AB-CD", []),
]


@pytest.mark.parametrize(("text", "ids"), CITATIONS, ids=[str(i) for i in range(len(CITATIONS))])
def test_citations_are_found_in_comments_and_docstrings(
    tmp_path: Path, text: str, ids: list[str]
) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text(text + "\n")

    assert sorted(cited_threat_ids(tmp_path)) == ids
