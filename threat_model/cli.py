"""``pumpguard threats``: check, list and report the threat model.

``threats check`` is the traceability gate of ``make test``: it fails (exit 5)
when a threat lacks a control, a control lacks code or tests, a linked test is
missing or did not pass, or the code cites a threat the model does not have.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from threat_model.catalogue import build_model
from threat_model.check import REPO_ROOT, require_ok, trace
from threat_model.model import Risk, Threat, ThreatModel
from threat_model.trace import TraceResult

__all__ = ["threats"]


@click.group()
def threats() -> None:
    """Threat model as code: traceability from threats to passing tests."""


@threats.command("check")
@click.option(
    "--junit",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JUnit XML of a pytest run whose outcomes count.",
)
@click.option("--run", "run_tests", is_flag=True, help="Run exactly the linked tests now.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary and problems as JSON.")
def check(junit: Path | None, run_tests: bool, as_json: bool) -> None:
    """Check every threat has controls, code and tests, and (with results) that they pass.

    Without --junit or --run only the structure is checked: implementations
    resolve, tests exist, cited threat ids are in the model, residual risks are
    acceptable. Exit 5 with every problem listed when anything is wrong.
    """
    if junit is not None and run_tests:
        raise click.UsageError("give --junit FILE or --run, not both")
    model = build_model()
    result = trace(model, junit=junit, run=run_tests, root=REPO_ROOT)
    summary = _summary(model, result)
    if as_json:
        click.echo(json.dumps({**summary, "problems": list(result.problems)}, indent=2))
    else:
        click.echo(
            f"{summary['threats']} threats, {summary['controls']} controls, "
            f"{summary['tests']} tests linked, {summary['passed']} passed "
            f"({summary['source']})"
        )
        for problem in result.problems:
            click.echo(f"problem: {problem}")
    require_ok(result)


@threats.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the threats as JSON.")
def list_(as_json: bool) -> None:
    """List the threats with their risk before and after controls."""
    model = build_model()
    if as_json:
        click.echo(json.dumps([_threat_json(t) for t in model.threats], indent=2))
        return
    for t in model.threats:
        accepted = "  (accepted)" if t.acceptance else ""
        click.echo(
            f"{t.id:<22} {t.category.value:<22} {_risk_text(t.before):>11} -> "
            f"{_risk_text(t.after)}{accepted}  {t.title}"
        )
        click.echo(f"{'':<22} controls: {', '.join(t.controls)}")


@threats.command("report")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the diagrams, the threat table and the matrix into.",
)
@click.option(
    "--junit",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JUnit XML of a pytest run, to put test outcomes into the matrix.",
)
def report(out: Path, junit: Path | None) -> None:
    """Write the data-flow diagram, threat table, traceability matrix and FDA views."""
    # The renderer needs Graphviz and is only loaded when a report is asked for.
    from threat_model.report import write_report

    model = build_model()
    result = trace(model, junit=junit, root=REPO_ROOT) if junit is not None else None
    for path in write_report(model, out, result):
        click.echo(str(path))


def _risk_text(risk: Risk) -> str:
    return f"{risk.level} {risk.score:>2}"


def _risk_json(risk: Risk) -> dict[str, Any]:
    return {
        "exploitability": risk.exploitability.name.lower(),
        "severity": risk.severity.name.lower(),
        "score": risk.score,
        "level": risk.level,
        "acceptable": risk.acceptable,
    }


def _threat_json(t: Threat) -> dict[str, Any]:
    return {
        "id": t.id,
        "title": t.title,
        "category": t.category.value,
        "targets": list(t.targets),
        "before": _risk_json(t.before),
        "after": _risk_json(t.after),
        "controls": list(t.controls),
        "acceptance": t.acceptance,
    }


def _summary(model: ThreatModel, result: TraceResult) -> dict[str, Any]:
    status = {row.test: row.status for row in result.rows if row.test}
    return {
        "ok": result.ok,
        "source": result.source,
        "threats": len(model.threats),
        "controls": len(model.controls),
        "tests": len(status),
        "passed": sum(1 for s in status.values() if s == "passed"),
    }
