"""Static analysis of the source tree with bandit, and the register of suppressions.

:func:`run_sast` runs bandit over a tree and writes, into one folder:

* ``bandit.json``: bandit's report, normalised so it is reproducible (paths
  relative to the scanned folder, sorted, without bandit's generation time);
* ``bandit.sarif``: the same findings as SARIF 2.1.0;
* ``nosec.json`` and ``nosec.md``: every ``# nosec`` in the tree with its
  file, line, rule ids and reason.

The result fails (:func:`require_clean`) on any medium or high severity
finding, on a file bandit could not scan, and on an unexplained suppression:
one that names no rule id or gives no reason.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import os
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pumpguard.fsutil import atomic_write_bytes
from threat_model._bandit import run_bandit
from threat_model._nosec import Suppression, find_suppressions
from threat_model._sarif import bandit_to_sarif, validate_sarif
from threat_model.errors import AssuranceError

__all__ = [
    "EXCLUDED_DIRS",
    "SastError",
    "SastFinding",
    "SastResult",
    "default_path",
    "python_files",
    "require_clean",
    "run_sast",
]

#: Folders never scanned: tests, tooling, virtual environments, build output.
EXCLUDED_DIRS = frozenset(
    {
        "tests",
        "test",
        "bench",
        "build",
        "dist",
        "docs",
        "venv",
        "node_modules",
        "site-packages",
        "__pycache__",
    }
)

#: Severities that fail the analysis (as ``bandit -ll`` in ``make lint``).
_BLOCKING = ("MEDIUM", "HIGH")


class SastError(AssuranceError):
    """The static analysis found a medium/high finding or an unexplained suppression."""

    exit_code = 5


@dataclass(frozen=True)
class SastFinding:
    """One bandit finding.

    Attributes:
        rule: Bandit rule id, e.g. ``B602``.
        name: Bandit test name.
        severity: ``LOW``, ``MEDIUM`` or ``HIGH``.
        confidence: ``LOW``, ``MEDIUM`` or ``HIGH``.
        file: Path relative to the scanned folder.
        line: 1-based line.
        message: Bandit's description.
        cwe: CWE id, if bandit gives one.
    """

    rule: str
    name: str
    severity: str
    confidence: str
    file: str
    line: int
    message: str
    cwe: int | None

    @property
    def blocking(self) -> bool:
        """Medium or high severity."""
        return self.severity in _BLOCKING

    def to_json(self) -> dict[str, Any]:
        """The finding as a JSON object."""
        return {
            "rule": self.rule,
            "name": self.name,
            "severity": self.severity,
            "confidence": self.confidence,
            "file": self.file,
            "line": self.line,
            "message": self.message,
            "cwe": self.cwe,
        }


@dataclass(frozen=True)
class SastResult:
    """What the static analysis found.

    Attributes:
        root: The scanned folder, as given.
        files_scanned: How many Python files were scanned.
        findings: Bandit's findings, sorted by file and line.
        suppressions: Every ``# nosec``, sorted by file and line.
        errors: Files bandit (or the register) could not read.
        bandit_version: The bandit that ran.
        outputs: The files written, sorted.
    """

    root: str
    files_scanned: int
    findings: tuple[SastFinding, ...]
    suppressions: tuple[Suppression, ...]
    errors: tuple[str, ...]
    bandit_version: str
    outputs: tuple[Path, ...]

    @property
    def blocking(self) -> tuple[SastFinding, ...]:
        """Medium and high severity findings."""
        return tuple(f for f in self.findings if f.blocking)

    @property
    def unexplained(self) -> tuple[Suppression, ...]:
        """Suppressions without a rule id or a reason."""
        return tuple(s for s in self.suppressions if not s.explained)

    @property
    def ok(self) -> bool:
        """Nothing blocking, nothing unexplained, nothing unscanned."""
        return not (self.blocking or self.unexplained or self.errors)

    def problems(self) -> list[str]:
        """One line per reason the analysis fails."""
        lines = [
            f"{f.file}:{f.line}: {f.rule} {f.severity.lower()} severity: {f.message}"
            for f in self.blocking
        ]
        lines += [
            f"{s.file}:{s.line}: unexplained # nosec: {'; '.join(s.problems)}"
            for s in self.unexplained
        ]
        lines += [f"not scanned: {err}" for err in self.errors]
        return lines

    def summary(self) -> dict[str, Any]:
        """Counts and verdict, as JSON."""
        severities = dict.fromkeys(("HIGH", "MEDIUM", "LOW"), 0)
        for f in self.findings:
            severities[f.severity] = severities.get(f.severity, 0) + 1
        return {
            "ok": self.ok,
            "bandit_version": self.bandit_version,
            "files_scanned": self.files_scanned,
            "findings": {k.lower(): v for k, v in severities.items()},
            "blocking": len(self.blocking),
            "suppressions": len(self.suppressions),
            "unexplained_suppressions": len(self.unexplained),
            "errors": len(self.errors),
            "problems": self.problems(),
        }


def default_path() -> Path:
    """The project this ``threat_model`` package belongs to (its repository root)."""
    return Path(__file__).resolve().parent.parent


def require_clean(result: SastResult) -> None:
    """Raise unless the analysis passed.

    Raises:
        SastError: Listing every blocking finding, unexplained suppression and
            unscanned file.
    """
    if not result.ok:
        problems = result.problems()
        raise SastError(
            f"static analysis of {result.root} fails: {len(problems)} problem(s): "
            + "; ".join(problems)
        )


def run_sast(path: Path, out: Path) -> SastResult:
    """Run bandit over ``path`` and write its reports and the nosec register into ``out``.

    A folder is scanned recursively, skipping :data:`EXCLUDED_DIRS` and hidden
    folders; a project root (a folder with a ``pyproject.toml`` listing its
    packages in ``tool.setuptools.packages.find.include``) is narrowed to
    those packages, so its tests, scripts and benchmarks are not scanned.

    Args:
        path: A Python file or a folder.
        out: Where to write ``bandit.json``, ``bandit.sarif``, ``nosec.json``
            and ``nosec.md`` (created if missing).

    Returns:
        The result; it is not an error for it to fail (see :func:`require_clean`).

    Raises:
        AssuranceError: ``path`` has no Python file, bandit is not installed or
            fails, or an output cannot be written.
    """
    base = path if path.is_dir() else path.parent
    files = python_files(path)
    if not files:
        raise AssuranceError(f"{path}: no Python files to analyse")
    try:
        version = importlib.metadata.version("bandit")
    except importlib.metadata.PackageNotFoundError as e:
        raise AssuranceError("bandit is not installed (pip install 'pumpguard[test]')") from e
    report = _normalise(run_bandit(sys.executable, files, base), base)
    suppressions: list[Suppression] = []
    errors = [f"{err['filename']}: {err['reason']}" for err in report["errors"]]
    for file in files:
        rel = _relative(file, base)
        try:
            suppressions += find_suppressions(file.read_bytes(), rel)
        except (OSError, SyntaxError, UnicodeDecodeError) as e:
            errors.append(f"{rel}: {e}")
    findings = tuple(_finding(r) for r in report["results"])
    sarif = bandit_to_sarif(report, version)
    validate_sarif(sarif, str(out / "bandit.sarif"))
    result = SastResult(
        root=str(path),
        files_scanned=len(files),
        findings=findings,
        suppressions=tuple(sorted(suppressions, key=lambda s: (s.file, s.line))),
        errors=tuple(sorted(set(errors))),
        bandit_version=version,
        outputs=(),
    )
    outputs = {
        "bandit.json": _json(report),
        "bandit.sarif": _json(sarif),
        "nosec.json": _json(
            {
                "convention": "# nosec BNNN, with the reason in a comment on the line(s) "
                "above or after a second '#' on the same line",
                "suppressions": [s.to_json() for s in result.suppressions],
                "unexplained": len(result.unexplained),
            }
        ),
        "nosec.md": _nosec_md(result).encode("utf-8"),
    }
    written = _write_all(out, outputs)
    return SastResult(
        root=result.root,
        files_scanned=result.files_scanned,
        findings=result.findings,
        suppressions=result.suppressions,
        errors=result.errors,
        bandit_version=result.bandit_version,
        outputs=tuple(written),
    )


def python_files(path: Path) -> list[Path]:
    """The Python files :func:`run_sast` scans under ``path``, sorted."""
    if path.is_file():
        return [path] if path.suffix == ".py" else []
    if not path.is_dir():
        raise AssuranceError(f"{path}: no such file or folder")
    roots = _packages(path) or [path]
    found: set[Path] = set()
    for root in roots:
        found.update(_walk(root))
    return sorted(found)


def _packages(root: Path) -> list[Path]:
    """The packages a ``pyproject.toml`` in ``root`` ships, or ``[]``."""
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return []
    try:
        config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise AssuranceError(f"cannot read {pyproject}: {e}") from e
    find = config.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {})
    patterns = find.get("include", []) if isinstance(find, dict) else []
    if not isinstance(patterns, list) or not patterns:
        return []
    return sorted(
        child
        for child in root.iterdir()
        if child.is_dir()
        and (child / "__init__.py").is_file()
        and any(fnmatch.fnmatchcase(child.name, str(p)) for p in patterns)
    )


def _walk(root: Path) -> Iterator[Path]:
    for directory, dirs, names in os.walk(root):
        # Prune in place so os.walk does not descend into excluded folders.
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in EXCLUDED_DIRS and not d.startswith(".") and not d.endswith(".egg-info")
        )
        yield from (Path(directory) / n for n in names if n.endswith(".py"))


def _relative(file: Path, base: Path) -> str:
    try:
        return file.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return file.as_posix()


def _normalise(report: dict[str, Any], base: Path) -> dict[str, Any]:
    """Bandit's report with relative paths, sorted, without its generation time."""
    results = []
    for r in report.get("results", []):
        results.append({**r, "filename": _relative(Path(r["filename"]), base)})
    results.sort(key=lambda r: (r["filename"], r["line_number"], r["test_id"], r["col_offset"]))
    errors = sorted(
        (
            {**err, "filename": _relative(Path(err["filename"]), base)}
            for err in report.get("errors", [])
        ),
        key=lambda err: (err["filename"], str(err.get("reason"))),
    )
    metrics = {
        ("_totals" if name == "_totals" else _relative(Path(name), base)): values
        for name, values in report.get("metrics", {}).items()
    }
    return {"errors": errors, "metrics": dict(sorted(metrics.items())), "results": results}


def _finding(r: dict[str, Any]) -> SastFinding:
    cwe = (r.get("issue_cwe") or {}).get("id")
    return SastFinding(
        rule=str(r["test_id"]),
        name=str(r.get("test_name", "")),
        severity=str(r.get("issue_severity", "")).upper(),
        confidence=str(r.get("issue_confidence", "")).upper(),
        file=str(r["filename"]),
        line=int(r["line_number"]),
        message=str(r.get("issue_text", "")),
        cwe=int(cwe) if cwe else None,
    )


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _nosec_md(result: SastResult) -> str:
    lines = [
        "# Register of `# nosec` suppressions",
        "",
        f"{len(result.suppressions)} suppressions in {result.files_scanned} files; "
        f"{len(result.unexplained)} unexplained.",
        "",
        "Convention: `# nosec BNNN` names the bandit rule, and the reason is in a comment "
        "on the line(s) directly above or after a second `#` on the same line.",
        "",
        "| file | line | rules | reason | status |",
        "|---|---|---|---|---|",
    ]
    for s in result.suppressions:
        status = "explained" if s.explained else "UNEXPLAINED: " + "; ".join(s.problems)
        lines.append(
            f"| `{_cell(s.file)}` | {s.line} | {_cell(', '.join(s.rules))} | "
            f"{_cell(s.reason)} | {_cell(status)} |"
        )
    return "\n".join(lines) + "\n"


def _write_all(out: Path, files: dict[str, bytes]) -> list[Path]:
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            atomic_write_bytes(out / name, files[name])
            written.append(out / name)
    except OSError as e:
        raise AssuranceError(f"cannot write the SAST results into {out}: {e}") from e
    return written
