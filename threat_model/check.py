"""Traceability: every threat has controls, every control code and passing tests.

:func:`trace` checks a :class:`~threat_model.model.ThreatModel` against the
repository it describes and, optionally, against test results:

- the model is closed under references (:meth:`ThreatModel.validate`);
- every threat has a control, every control an implementation and a test, and
  every control mitigates some threat;
- every implementation resolves: ``module`` or ``module:qualname`` of one of the
  repository's own packages (imported, then looked up attribute by attribute),
  or a repository path containing a ``/``;
- every named test exists: the linked test files are collected by
  ``pytest --collect-only`` in a subprocess (the only way to know parametrized
  ids exactly); a node id without parameters stands for all of its cases;
- with results (a JUnit XML file, or ``run=True`` which runs exactly the linked
  tests), every named test passed. A base node id passes only when every case
  collected now ran and passed. A skipped case is a problem too: a skipped test
  proves nothing, and the suite skips only when a system part is missing, which
  ``make test`` installs (under ``CI=true`` a missing part fails instead);
- every threat id cited in the code (a comment or docstring saying ``threat``
  or ``threats`` followed by ids such as ``AB-CD``, comma-separated) is in the
  model;
- every residual risk is acceptable (:attr:`Risk.acceptable`), not above the
  unmitigated one, or explicitly accepted with a rationale
  (:attr:`Threat.acceptance`).
"""

from __future__ import annotations

import importlib
import importlib.util
import re

# Bandit B404: pytest is run as a subprocess with a fixed argv (collect, run).
import subprocess  # nosec B404
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# Bandit B405: only the type is imported; parsing goes through _junit.parse_junit.
from xml.etree.ElementTree import Element  # nosec B405

from threat_model._junit import parse_junit
from threat_model.errors import ThreatModelError, TraceabilityError
from threat_model.model import Control, Threat, ThreatModel
from threat_model.trace import TraceResult, TraceRow

__all__ = [
    "REPO_ROOT",
    "Outcome",
    "cited_threat_ids",
    "collect_node_ids",
    "read_junit",
    "require_ok",
    "trace",
]

#: The repository this package belongs to (tests, packages, pyproject.toml).
REPO_ROOT = Path(__file__).resolve().parent.parent

_ID = r"[A-Z]{2,4}(?:-[A-Z0-9]+)+"
# Ids may continue on the next comment line ("threats A-B,\n# C-D").
_SEP = r"(?:[\s#]*,[\s#]*(?:(?:and|or)[\s#]+)?|[\s#]+(?:and|or)[\s#]+)"
_CITATION = re.compile(rf"\b[Tt]hreats?[\s#]+(?P<ids>{_ID}(?:{_SEP}{_ID})*)\b")
_ONE_ID = re.compile(_ID)

# Worst first: when a test appears twice in one JUnit file, the worse outcome counts.
_RANK = {"failed": 0, "skipped": 1, "passed": 2}
_COLLECT_TIMEOUT = 600.0
#: Largest JUnit file read: a whole-suite run is a few MiB.


@dataclass(frozen=True)
class Outcome:
    """What a JUnit file says about one test case."""

    status: str  # passed, failed or skipped
    detail: str = ""


# ------------------------------------------------------------------ entry points


def trace(
    model: ThreatModel,
    *,
    junit: Path | None = None,
    run: bool = False,
    root: Path = REPO_ROOT,
) -> TraceResult:
    """Check ``model`` against the repository at ``root`` and, if given, test results.

    Args:
        model: The threat model.
        junit: A JUnit XML file of a pytest run from ``root`` whose outcomes count.
        run: Run exactly the linked tests now (pytest in a subprocess writing a
            temporary JUnit file) and use their outcomes.
        root: The repository: its packages resolve implementations and contain
            cited threat ids; test node ids are relative to it.

    Returns:
        The traceability matrix and every problem found (``result.ok`` when none).

    Raises:
        ThreatModelError: Both ``junit`` and ``run`` given, or the JUnit file
            cannot be read.
    """
    if junit is not None and run:
        raise ThreatModelError("give a JUnit file or run the tests, not both")
    root = root.resolve()
    problems: list[str] = []
    try:
        model.validate()
    except ThreatModelError as e:
        problems.append(str(e))
    problems += _structure_problems(model)
    problems += _risk_problems(model)
    problems += _implementation_problems(model, root)
    problems += _citation_problems(model, root)

    linked = sorted({t for c in model.controls for t in c.tests})
    files = sorted({_file_of(t) for t in linked if (root / _file_of(t)).is_file()})
    collected, collect_problems = collect_node_ids(root, files)
    problems += collect_problems
    existing = [t for t in linked if _cases_of(t, collected)]

    results: dict[str, Outcome] | None = None
    if junit is not None:
        source = f"junit {junit}"
        results = read_junit(junit, root, collected)
    elif run:
        source = "pytest run"
        results, run_problems = _run_tests(root, existing, collected)
        problems += run_problems
    else:
        source = "static (no test results)"

    statuses: dict[str, str] = {}
    for test in linked:
        status, detail = _test_status(test, root, collected, results)
        statuses[test] = status
        if status == "missing" or (results is not None and status != "passed"):
            users = ", ".join(c.id for c in model.controls if test in c.tests)
            problems.append(f"test {test} {detail} (control {users})")

    return TraceResult(rows=_rows(model, statuses), problems=tuple(problems), source=source)


def require_ok(result: TraceResult) -> None:
    """Raise unless ``result`` found no problem.

    Raises:
        TraceabilityError: Carrying every problem (exit code 5).
    """
    if not result.ok:
        n = len(result.problems)
        raise TraceabilityError(
            f"traceability check failed: {n} problem{'s' if n != 1 else ''}",
            list(result.problems),
        )


# ------------------------------------------------------------ model structure


def _structure_problems(model: ThreatModel) -> list[str]:
    problems: list[str] = []
    used: set[str] = set()
    for threat in model.threats:
        used.update(threat.controls)
        if not threat.controls:
            problems.append(f"threat {threat.id} has no control")
    for control in model.controls:
        if not control.tests:
            problems.append(f"control {control.id} has no test")
        if not control.implemented_in:
            problems.append(f"control {control.id} names no implementation")
        if control.id not in used:
            problems.append(f"control {control.id} mitigates no threat")
    return problems


def _risk_problems(model: ThreatModel) -> list[str]:
    problems: list[str] = []
    for t in model.threats:
        if t.after.score > t.before.score:
            problems.append(
                f"threat {t.id}: residual risk {t.after.score} is above the unmitigated "
                f"risk {t.before.score}"
            )
        if not t.after.acceptable and not (t.acceptance or "").strip():
            problems.append(
                f"threat {t.id}: residual risk {t.after.level} "
                f"({t.after.exploitability.name} x {t.after.severity.name}) is not "
                "acceptable and not accepted with a rationale"
            )
    return problems


# ------------------------------------------------------------ implementations


def _implementation_problems(model: ThreatModel, root: Path) -> list[str]:
    packages = {p.name for p in root.iterdir() if (p / "__init__.py").is_file()}
    problems: list[str] = []
    checked: dict[str, str | None] = {}
    for control in model.controls:
        for spec in control.implemented_in:
            if spec not in checked:
                checked[spec] = _resolve(spec, root, packages)
            problem = checked[spec]
            if problem is not None:
                problems.append(f"control {control.id}: implementation {spec}: {problem}")
    return problems


def _resolve(spec: str, root: Path, packages: set[str]) -> str | None:
    """Why ``spec`` does not resolve, or None when it does."""
    if "/" in spec:
        path = (root / spec).resolve()
        if not path.is_relative_to(root) or not path.exists():
            return "no such path in the repository"
        return None
    module, _, qualname = spec.partition(":")
    top = module.split(".")[0]
    if top not in packages:
        return f"{top} is not a package of this repository"
    # Import only the repository's own code: a package of the same name
    # installed elsewhere would prove nothing about this tree.
    found = importlib.util.find_spec(top)
    origin = found.origin if found is not None else None
    if origin is None or not Path(origin).resolve().is_relative_to(root):
        return f"{top} is not importable from {root}"
    try:
        obj: object = importlib.import_module(module)
    except Exception as e:  # any failure to import is the finding to report
        return f"cannot import {module}: {type(e).__name__}: {e}"
    for part in qualname.split(".") if qualname else ():
        if not hasattr(obj, part):
            return f"{module} has no {qualname}"
        obj = getattr(obj, part)
    return None


# ------------------------------------------------------------------ citations


def cited_threat_ids(root: Path = REPO_ROOT) -> dict[str, list[str]]:
    """Threat ids cited in the repository's Python files, with where.

    Scans the packages (directories with ``__init__.py``) and ``tests``.

    Returns:
        Threat id -> ``path:line`` of each citation.
    """
    root = root.resolve()
    dirs = [p for p in sorted(root.iterdir()) if (p / "__init__.py").is_file()]
    if (root / "tests").is_dir():
        dirs.append(root / "tests")
    found: dict[str, list[str]] = {}
    for d in dirs:
        for path in sorted(d.rglob("*.py")):
            text = path.read_text(encoding="utf-8", errors="replace")
            for m in _CITATION.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                where = f"{path.relative_to(root)}:{line}"
                for id_ in _ONE_ID.findall(m.group("ids")):
                    found.setdefault(id_, []).append(where)
    return found


def _citation_problems(model: ThreatModel, root: Path) -> list[str]:
    known = {t.id for t in model.threats}
    return [
        f"threat {id_} is cited in {', '.join(where)} but is not in the model"
        for id_, where in sorted(cited_threat_ids(root).items())
        if id_ not in known
    ]


# ---------------------------------------------------------------------- tests


def _file_of(node_id: str) -> str:
    return node_id.split("::", 1)[0]


def _cases_of(node_id: str, collected: Iterable[str]) -> list[str]:
    """The collected node ids ``node_id`` stands for (itself, its cases, its methods)."""
    if node_id in collected:
        return [node_id]
    if "[" in node_id:
        return []
    prefixes = (node_id + "[", node_id + "::")
    return sorted(c for c in collected if c.startswith(prefixes))


def collect_node_ids(root: Path, files: Iterable[str]) -> tuple[set[str], list[str]]:
    """Every test node id pytest collects from ``files`` (paths relative to ``root``).

    Returns:
        The node ids, and a problem line for each file pytest could not collect.
    """
    files = list(files)
    if not files:
        return set(), []
    cmd = [
        sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
        "--continue-on-collection-errors", "--rootdir", str(root), *files,
    ]  # fmt: skip
    # Bandit B603: a fixed argv of this interpreter's pytest on the
    # repository's own test files, no shell.
    proc = subprocess.run(  # nosec B603
        cmd, cwd=root, capture_output=True, text=True, timeout=_COLLECT_TIMEOUT, check=False
    )
    wanted = set(files)
    ids = {line for line in proc.stdout.splitlines() if _file_of(line) in wanted and "::" in line}
    problems = [
        f"pytest could not collect {line.removeprefix('ERROR ').strip()}"
        for line in proc.stdout.splitlines()
        if line.startswith("ERROR ")
    ]
    if proc.returncode not in (0, 1, 5) and not problems:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        problems.append(f"pytest --collect-only failed ({proc.returncode}): {' | '.join(tail)}")
    return ids, problems


def _junit_address(node_id: str) -> tuple[str, str]:
    """pytest's (classname, name) of a node id (``_pytest.junitxml.mangle_test_address``)."""
    path, bracket, params = node_id.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]


def _guess_node_id(classname: str, name: str, root: Path) -> str:
    # A test that is no longer collected: find its file among the dotted parts.
    parts = classname.split(".")
    for i in range(len(parts), 0, -1):
        candidate = "/".join(parts[:i]) + ".py"
        if (root / candidate).is_file():
            return "::".join([candidate, *parts[i:], name])
    return "::".join(["/".join(parts) + ".py", name])


def read_junit(path: Path, root: Path, collected: Iterable[str] = ()) -> dict[str, Outcome]:
    """The outcome of every test case in pytest's JUnit XML ``path``, by node id.

    Args:
        path: The JUnit file.
        root: The repository the run was made from.
        collected: Node ids collected now, to map ``classname``/``name`` back exactly.

    Raises:
        ThreatModelError: The file cannot be read or is not XML.
    """
    addresses = {_junit_address(c): c for c in collected}
    _, tree = parse_junit(path)
    results: dict[str, Outcome] = {}
    for case in tree.iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        node = addresses.get((classname, name)) or _guess_node_id(classname, name, root)
        outcome = _outcome(case)
        old = results.get(node)
        if old is None or _RANK[outcome.status] < _RANK[old.status]:
            results[node] = outcome
    return results


def _outcome(case: Element) -> Outcome:
    for tag in ("failure", "error"):
        child = case.find(tag)
        if child is not None:
            return Outcome("failed", _first_line(child.get("message", tag)))
    skipped = case.find("skipped")
    if skipped is not None:
        return Outcome("skipped", _first_line(skipped.get("message", "")))
    return Outcome("passed")


def _first_line(message: str) -> str:
    # Assertion messages run over many lines; a problem is one line.
    return message.strip().splitlines()[0] if message.strip() else ""


def _run_tests(
    root: Path, node_ids: list[str], collected: set[str]
) -> tuple[dict[str, Outcome], list[str]]:
    if not node_ids:
        return {}, []
    with tempfile.TemporaryDirectory(prefix="pumpguard-trace-") as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--rootdir", str(root), f"--junitxml={xml}", *node_ids,
        ]  # fmt: skip
        # Bandit B603: a fixed argv of this interpreter's pytest on node ids that
        # were just collected from the repository's own test files.
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)  # nosec B603
        if not xml.is_file():
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
            return {}, [f"pytest wrote no results ({proc.returncode}): {' | '.join(tail)}"]
        return read_junit(xml, root, collected), []


def _test_status(
    test: str, root: Path, collected: set[str], results: Mapping[str, Outcome] | None
) -> tuple[str, str]:
    """(status, what to say when it is a problem) of one linked test."""
    if not (root / _file_of(test)).is_file():
        return "missing", f"does not exist (no file {_file_of(test)})"
    cases = _cases_of(test, collected)
    if not cases:
        return "missing", "does not exist"
    if results is None:
        return "not-run", "has no result"
    outcomes = {c: results.get(c) for c in cases}
    failed = [c for c, o in outcomes.items() if o is not None and o.status == "failed"]
    not_run = [c for c, o in outcomes.items() if o is None]
    skipped = [c for c, o in outcomes.items() if o is not None and o.status == "skipped"]
    of = f" ({{}} of {len(cases)} cases)" if len(cases) > 1 else ""
    if failed:
        first = outcomes[failed[0]]
        why = f": {first.detail}" if first is not None and first.detail else ""
        return "failed", "failed" + of.format(len(failed)) + why
    if not_run:
        return "not-run", "did not run" + of.format(len(not_run))
    if skipped:
        first = outcomes[skipped[0]]
        why = f": {first.detail}" if first is not None and first.detail else ""
        return "skipped", "was skipped, which proves nothing" + of.format(len(skipped)) + why
    return "passed", "passed"


# ----------------------------------------------------------------- the matrix


def _rows(model: ThreatModel, statuses: Mapping[str, str]) -> tuple[TraceRow, ...]:
    controls: dict[str, Control] = {c.id: c for c in model.controls}
    rows: list[TraceRow] = []
    for threat in model.threats:
        rows += _threat_rows(threat, controls, statuses)
    return tuple(rows)


def _threat_rows(
    threat: Threat, controls: Mapping[str, Control], statuses: Mapping[str, str]
) -> list[TraceRow]:
    # A gap (no control, no test) is a row too, so the rendered matrix shows it.
    if not threat.controls:
        return [TraceRow(threat.id, "", (), "", "missing")]
    rows: list[TraceRow] = []
    for control_id in threat.controls:
        control = controls.get(control_id)
        if control is None:
            rows.append(TraceRow(threat.id, control_id, (), "", "missing"))
        elif not control.tests:
            rows.append(TraceRow(threat.id, control_id, control.implemented_in, "", "missing"))
        else:
            rows += [
                TraceRow(threat.id, control_id, control.implemented_in, t, statuses[t])
                for t in control.tests
            ]
    return rows
