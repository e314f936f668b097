"""The ``pumpguard assurance`` commands: static analysis and the assurance package.

Errors are :class:`threat_model.errors.AssuranceError` subclasses; the umbrella
CLI prints them as one line and exits with their code: 0 success, 1 a failed
operation, 2 bad input, 4 the release does not verify through TUF, 5 the
static analysis fails (a medium/high finding or an unexplained ``# nosec``).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import click

from threat_model._index import count_open

__all__ = ["assurance"]

_INPUT = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)


@click.group()
def assurance() -> None:
    """Static analysis and the premarket cybersecurity assurance package.

    Exit codes: 0 success; 1 a failed operation; 2 bad input; 4 the release
    does not verify through TUF; 5 the static analysis fails.
    """


@assurance.command()
@click.argument(
    "path",
    required=False,
    type=click.Path(exists=True, path_type=Path),
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for bandit.json, bandit.sarif, nosec.json and nosec.md.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def sast(path: Path | None, out: Path, as_json: bool) -> None:
    """Run bandit over PATH (default: this project's packages) and list every # nosec.

    Writes bandit's report as JSON and SARIF 2.1.0 and the register of
    suppressions. A suppression must name its rule (# nosec B603) and give its
    reason in a comment on the line above or after a second '#'.

    Exit codes: 0 clean; 5 a medium/high finding, an unexplained # nosec, or a
    file bandit could not scan.
    """
    from threat_model.sast import default_path, require_clean, run_sast

    result = run_sast(path or default_path(), out)
    if as_json:
        doc = {
            "path": result.root,
            **result.summary(),
            "outputs": [str(p) for p in result.outputs],
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        verdict = "passes" if result.ok else "FAILS"
        counts = result.summary()["findings"]
        click.echo(
            f"{result.root}: {result.files_scanned} files; bandit {result.bandit_version}: "
            f"{counts['high']} high, {counts['medium']} medium, {counts['low']} low; "
            f"{len(result.suppressions)} # nosec ({len(result.unexplained)} unexplained); "
            f"{verdict}"
        )
        for problem in result.problems():
            click.echo(f"  {problem}")
        click.echo(f"wrote {out}")
    require_clean(result)


@assurance.command()
@click.option("--release", "release", required=True, help="The release, PRODUCT/VERSION.")
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="A TUF repository directory (metadata/ and targets/).",
)
@click.option("--server", default=None, help="The update server's base URL (TUF under /tuf/).")
@click.option(
    "--root",
    "root_file",
    required=True,
    type=_INPUT,
    help="The trusted root.json to verify from (never the repository's own).",
)
@click.option(
    "--db",
    "db_path",
    envvar="PUMPGUARD_VULNDB",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The vulnerability store (SQLite file); default $PUMPGUARD_VULNDB.",
)
@click.option(
    "--vex",
    "vex_files",
    type=_INPUT,
    multiple=True,
    help="CycloneDX VEX document applied on top of the store's analyses; repeatable.",
)
@click.option(
    "--junit",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JUnit XML report of the test run (pytest --junitxml), for the traceability.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The zip to write, e.g. assurance-sigma-spectrum-1.0.0.zip.",
)
@click.option(
    "--recorded-at",
    default=None,
    help="The package's one timestamp (ISO 8601 with zone); default now. Pin it to "
    "rebuild a byte-identical package.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def build(
    release: str,
    repo: Path | None,
    server: str | None,
    root_file: Path,
    db_path: Path,
    vex_files: tuple[Path, ...],
    junit: Path | None,
    out: Path,
    recorded_at: str | None,
    as_json: bool,
) -> None:
    """Build the premarket assurance package of a release as one zip.

    It holds the release's SBOM (verified through TUF, bound to the firmware)
    and SBOM check, the vulnerability audit and VEX, the threat model report
    and traceability matrix, the static analysis and nosec register, the test
    results, manifest.json (sha256 of every file) and index.html, which a
    reviewer opens first. Building twice from the same inputs gives the same
    bytes except for the recorded time (--recorded-at pins it).

    Exit codes: 0 built; 1 a failed operation; 2 bad input; 4 the release does
    not verify through TUF.
    """
    from threat_model.package import build_package

    if (repo is None) == (server is None):
        raise click.UsageError("give exactly one of --repo and --server")
    path = build_package(
        release=release,
        root=root_file,
        db=db_path,
        out=out,
        repo=repo,
        server=server,
        vex=vex_files,
        junit=junit,
        recorded_at=recorded_at,
    )
    summary = _summary(path)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(
        f"wrote {path}: {summary['files']} files, recorded at {summary['recorded_at']}; "
        "open risks: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary["open"].items())
    )


def _summary(path: Path) -> dict[str, Any]:
    """What the CLI reports, read back from the package it wrote."""
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        risks = json.loads(archive.read("summary.json"))["open_risks"]
    return {
        "out": str(path),
        "release": manifest["release"],
        "recorded_at": manifest["recorded_at"],
        "files": len(manifest["files"]) + 1,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "open": count_open(risks),
        "test_results_given": risks["tests"]["results_given"],
    }
