"""The ``pumpguard sbom`` and ``pumpguard vulndb`` commands.

Errors are raised as :class:`sbom.errors.SbomError` subclasses; the umbrella CLI
(:mod:`pumpguard.cli`) prints them as one line and exits with their code:
0 success, 1 a failed operation, 2 bad input or usage, 4 an SBOM that is not
valid CycloneDX 1.6 or does not verify, 5 an SBOM that fails the chosen policy
(``sbom check``, ``sbom audit --fail-on``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from pumpguard.fsutil import FileTooLargeError, atomic_write_bytes, read_capped
from sbom.binding import bound_firmware_sha256
from sbom.errors import SbomError, SbomPolicyError, SbomValidationError, VexError
from sbom.generate import build_firmware_sbom
from sbom.manifest import ComponentSpec
from sbom.vex import JUSTIFICATIONS, RESPONSES, STATES

__all__ = ["sbom", "vulndb"]

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
#: Largest SBOM or VEX document read.
_MAX_DOCUMENT = 256 << 20
_DB_HELP = "The vulnerability store (SQLite file); default $PUMPGUARD_VULNDB."


def _hash_file(path: Path) -> tuple[str, int]:
    """sha256 and size of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as e:
        raise SbomError(f"cannot read firmware {path}: {e.strerror or e}") from e
    return digest.hexdigest(), size


def _write(path: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise SbomError(f"cannot write {path}: {e.strerror or e}") from e


def _read_document(path: Path) -> bytes:
    try:
        return read_capped(path, _MAX_DOCUMENT)
    except FileTooLargeError as e:
        raise SbomValidationError(str(e)) from e
    except OSError as e:
        raise SbomError(f"cannot read {path}: {e.strerror or e}") from e


def _load_sbom(path: Path) -> tuple[bytes, dict[str, Any]]:
    from sbom.model import load_sbom

    data = _read_document(path)
    return data, load_sbom(data, str(path))


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False))


_DB_OPTION = click.option(
    "--db",
    "db_path",
    envvar="PUMPGUARD_VULNDB",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help=_DB_HELP,
)
_INPUT = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)


@click.group()
def sbom() -> None:
    """Generate, check, audit, diff and verify CycloneDX SBOMs of firmware releases.

    Exit codes: 0 success; 1 a failed operation; 2 bad input or usage; 4 an
    SBOM that is not valid CycloneDX 1.6 or does not verify; 5 an SBOM that
    fails the chosen policy (check, audit --fail-on).
    """


@sbom.command()
@click.option("--product", required=True, help="Product line, e.g. sigma-spectrum.")
@click.option("--version", required=True, help="Semantic version of the release.")
@click.option(
    "--firmware",
    "firmware",
    required=True,
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
    help="The firmware image the SBOM describes.",
)
@click.option(
    "--firmware-name",
    default=None,
    help="File name recorded for the image (default: the name of --firmware).",
)
@click.option(
    "--hardware-id",
    "hardware_ids",
    multiple=True,
    help="Pump hardware revision the image runs on; repeat for several.",
)
@click.option(
    "--components",
    "components",
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
    default=None,
    help="TOML component manifest (docs/sbom-manifest.md).",
)
@click.option(
    "--yocto-manifest",
    type=_INPUT,
    default=None,
    help="Yocto image manifest (IMAGE.manifest: '<package> <arch> <version>' lines).",
)
@click.option(
    "--yocto-licenses",
    type=_INPUT,
    default=None,
    help="Yocto license.manifest: adds each package's recipe and licenses.",
)
@click.option(
    "--dpkg-status",
    type=_INPUT,
    default=None,
    help="dpkg status file of the image (var/lib/dpkg/status); needs --dpkg-distro.",
)
@click.option(
    "--dpkg-distro",
    default=None,
    help="Distribution of --dpkg-status, the purl namespace: debian, ubuntu ...",
)
@click.option(
    "--merge",
    "merge",
    type=_INPUT,
    multiple=True,
    help="A CycloneDX 1.4-1.6 JSON SBOM whose components to include; repeat for several.",
)
@click.option(
    "--author",
    "authors",
    multiple=True,
    help="Author of the SBOM data (metadata.authors); repeat for several.",
)
@click.option(
    "--supplier",
    default=None,
    help="Supplier of the firmware (default: the manifest's [supplier], else none).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Where to write the SBOM, e.g. sbom.cdx.json.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def generate(
    product: str,
    version: str,
    firmware: Path,
    firmware_name: str | None,
    hardware_ids: tuple[str, ...],
    components: Path | None,
    yocto_manifest: Path | None,
    yocto_licenses: Path | None,
    dpkg_status: Path | None,
    dpkg_distro: str | None,
    merge: tuple[Path, ...],
    authors: tuple[str, ...],
    supplier: str | None,
    out: Path,
    as_json: bool,
) -> None:
    """Write the CycloneDX 1.6 SBOM of a firmware image.

    The SBOM's firmware component carries the image's sha256 and size, so it is
    bound to exactly this image. Components come from any combination of the
    TOML manifest, a Yocto image (and license) manifest, a dpkg status file and
    other CycloneDX SBOMs; the same name and version from several inputs is one
    component, the manifest's facts first. The file is written atomically.
    """
    inputs = (firmware, components, yocto_manifest, yocto_licenses, dpkg_status, *merge)
    for source in inputs:
        if source is not None and out.resolve() == source.resolve():
            raise SbomError(f"--out {out} would overwrite the input {source}")
    if (dpkg_status is None) != (dpkg_distro is None):
        raise click.UsageError("--dpkg-status and --dpkg-distro go together")
    extra: list[ComponentSpec] = []
    if yocto_manifest is not None or yocto_licenses is not None:
        from sbom.yocto import load_yocto

        extra += load_yocto(yocto_manifest, yocto_licenses)
    if dpkg_status is not None and dpkg_distro is not None:
        from sbom.dpkg import load_dpkg_status

        extra += load_dpkg_status(dpkg_status, dpkg_distro)
    for path in merge:
        from sbom.merge import load_cyclonedx

        extra += load_cyclonedx(path)
    sha256, size = _hash_file(firmware)
    document = build_firmware_sbom(
        product=product,
        version=version,
        firmware_name=firmware_name if firmware_name is not None else firmware.name,
        firmware_sha256=sha256,
        firmware_size=size,
        hardware_ids=hardware_ids,
        supplier=supplier,
        components_manifest=components,
        components=extra,
        authors=authors,
    )
    _write(out, document)
    count = len(json.loads(document).get("components", []))
    bound = bound_firmware_sha256(document)
    if as_json:
        summary = {"out": str(out), "components": count, "firmware_sha256": bound}
        click.echo(json.dumps(summary))
    else:
        click.echo(f"wrote {out}: {count} components, firmware sha256 {bound}")


# ----------------------------------------------------------------------- check
@sbom.command()
@click.argument("file", type=_INPUT)
@click.option(
    "--policy",
    type=click.Choice(["ntia", "fda", "strict"]),
    default="fda",
    show_default=True,
    help="ntia: the NTIA minimum elements. fda: also every component's support level "
    "and end-of-support date, and none past its end of support. strict: also no "
    "fact stated as unknown, no support ending within the horizon, nothing unsupported.",
)
@click.option(
    "--horizon-days",
    type=click.IntRange(min=0),
    default=365,
    show_default=True,
    help="Flag components whose support ends within this many days.",
)
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Judge support dates as of this day (YYYY-MM-DD); default today (UTC).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
def check(
    file: Path, policy: str, horizon_days: int, today: datetime.datetime | None, as_json: bool
) -> None:
    """Check an SBOM: schema, NTIA minimum elements, FDA support facts.

    The SBOM must be valid against the strict CycloneDX 1.6 schema (else exit
    4). Then each component is checked for supplier, version, a unique
    identifier (purl, CPE or SWID) and its dependency entry, and the document
    for its author and timestamp (NTIA); each component for its support level
    and end-of-support date (FDA). Components past their end of support, or
    reaching it within --horizon-days, are flagged.

    Exit codes: 0 the policy passes, 4 not valid CycloneDX 1.6, 5 the policy fails.
    """
    from sbom.check import check_sbom

    _, doc = _load_sbom(file)
    day = today.date() if today else datetime.datetime.now(datetime.UTC).date()
    report = check_sbom(doc, today=day, horizon_days=horizon_days)
    failures = report.failures(policy)
    if as_json:
        _echo_json({"file": str(file), **report.to_json(policy)})
    else:
        verdict = "passes" if not failures else "FAILS"
        click.echo(f"{file}: {report.components} components; policy {policy} {verdict}")
        for problem in report.problems:
            failing = problem in failures
            mark = "FAIL" if failing else "note"
            who = problem.component or "document"
            click.echo(f"  {mark} [{problem.level}] {who}: {problem.element}: {problem.message}")
    if failures:
        raise SbomPolicyError(f"{file} fails policy {policy}: {len(failures)} problem(s)")


# ----------------------------------------------------------------------- audit
_FAIL_ON = ("none", "open", "kev", "critical", "high", "medium", "low")


def _gate(findings: Sequence[Any], fail_on: str) -> list[Any]:
    """Open findings (needing triage, or analysed as exploitable) that fail ``fail_on``."""
    from sbom.audit import SEVERITIES

    if fail_on == "none":
        return []
    open_ = [
        f
        for f in findings
        if f.needs_triage or (f.analysis is not None and f.analysis.state == "exploitable")
    ]
    if fail_on == "open":
        return open_
    if fail_on == "kev":
        return [f for f in open_ if f.kev is not None]
    limit = SEVERITIES.index(fail_on)
    return [f for f in open_ if f.kev is not None or SEVERITIES.index(f.severity) <= limit]


def _vex_analyses(paths: Sequence[Path], components: Sequence[Any]) -> list[Any]:
    from sbom.model import load_sbom
    from sbom.vex import parse_vex

    result: list[Any] = []
    for path in paths:
        doc = load_sbom(_read_document(path), str(path))
        result += parse_vex(doc, str(path), components)
    return result


@sbom.command()
@click.argument("file", type=_INPUT)
@_DB_OPTION
@click.option(
    "--vex",
    "vex_files",
    type=_INPUT,
    multiple=True,
    help="CycloneDX VEX document whose analyses apply on top of the store's; repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the audit as JSON.")
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the reviewer's report, one self-contained HTML page.",
)
@click.option(
    "--fail-on",
    type=click.Choice(_FAIL_ON),
    default="none",
    show_default=True,
    help="Exit 5 when an open finding (needing triage, or analysed as exploitable) is: "
    "any (open), known exploited (kev), or of this severity or worse (a KEV one always).",
)
@click.option(
    "--horizon-days",
    type=click.IntRange(min=0),
    default=365,
    show_default=True,
    help="Support-date horizon for the report's support section.",
)
def audit(
    file: Path,
    db_path: Path,
    vex_files: tuple[Path, ...],
    as_json: bool,
    html_out: Path | None,
    fail_on: str,
    horizon_days: int,
) -> None:
    """Match an SBOM's components against the offline vulnerability store.

    Components are matched by package URL (OSV ranges and versions) and by
    CPE (NVD ranges). Each finding shows its severity (CVSS), whether CISA
    lists it as known exploited, the fixing versions, and the latest VEX
    analysis (from the store, then from --vex files). Findings without a
    settling analysis need triage. The output names the store's imports (file
    and sha256), so the audit can be reproduced.

    Exit codes: 0 done, 4 the SBOM is not valid CycloneDX 1.6, 5 --fail-on matched.
    """
    from sbom.audit import audit as run_audit
    from sbom.audit_json import audit_document
    from sbom.check import check_sbom
    from sbom.model import component_identity, read_components
    from sbom.vulndb import VulnDb

    data, doc = _load_sbom(file)
    components = read_components(doc)
    with VulnDb.open(db_path, readonly=True) as db:
        identities = {component_identity(c)[0] for c in components}
        analyses = db.analyses(identities) + _vex_analyses(vex_files, components)
        result = run_audit(components, db, analyses)
        imports = db.imports()
    generated = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
    logger.info(
        "audited %s: %d components, %d findings", file, len(components), len(result.findings)
    )
    if html_out is not None:
        from sbom.report_html import render_report

        day = datetime.datetime.now(datetime.UTC).date()
        page = render_report(
            title=file.name,
            subject=doc.get("metadata", {}).get("component", {}),
            components=components,
            result=result,
            check=check_sbom(doc, today=day, horizon_days=horizon_days),
            imports=imports,
            generated=generated,
        )
        _write(html_out, page.encode("utf-8"))
    failing = _gate(result.findings, fail_on)
    if as_json:
        _echo_json(
            audit_document(
                result,
                sbom={
                    "file": str(file),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "serialNumber": doc.get("serialNumber"),
                },
                store={"file": str(db_path)},
                imports=imports,
                context={"generated": generated},
                gate={"fail_on": fail_on, "failing": len(failing)},
            )
        )
    else:
        _print_audit(file, result, html_out)
    if failing:
        raise SbomPolicyError(f"{file}: {len(failing)} open finding(s) fail --fail-on {fail_on}")


def _print_audit(file: Path, result: Any, html_out: Path | None) -> None:
    counts = result.counts()
    click.echo(
        f"{file}: {result.components} components, {counts['findings']} findings "
        f"({counts['critical']} critical, {counts['high']} high, {counts['medium']} medium, "
        f"{counts['low']} low, {counts['unknown']} unknown severity), "
        f"{counts['kev']} known exploited, {counts['needs_triage']} need triage"
    )
    for f in result.findings:
        score = "" if f.cvss_score is None else f" {f.cvss_score:.1f}"
        kev = " KEV" if f.kev is not None else ""
        state = "NEEDS TRIAGE" if f.needs_triage else f.analysis.state
        fixed = f" fixed in {', '.join(f.fixed_versions)}" if f.fixed_versions else ""
        click.echo(
            f"  {f.severity.upper()}{score}{kev} {f.vuln_id} in {f.component.label}:{fixed} "
            f"[{state}]"
        )
        for note in f.notes:
            click.echo(f"    note: {note}")
    for c, why in result.not_checked():
        click.echo(f"  not checked: {c.label}: {why}")
    if html_out is not None:
        click.echo(f"wrote {html_out}")


# ------------------------------------------------------------------------ diff
@sbom.command()
@click.argument("old", type=_INPUT)
@click.argument("new", type=_INPUT)
@click.option(
    "--db",
    "db_path",
    envvar="PUMPGUARD_VULNDB",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Vulnerability store; with it, also vulnerabilities introduced and fixed. "
    "Default $PUMPGUARD_VULNDB.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the difference as JSON.")
def diff(old: Path, new: Path, db_path: Path | None, as_json: bool) -> None:
    """List what changed between two releases' SBOMs.

    Components are paired by package URL without version (or by name):
    added, removed, and changed (version, hashes, supplier, licenses). With a
    store, both SBOMs are audited and the vulnerabilities the new release
    introduces and fixes are listed too.
    """
    from sbom.audit import audit as run_audit
    from sbom.diff import diff_sboms
    from sbom.model import read_components
    from sbom.vulndb import VulnDb

    old_components = read_components(_load_sbom(old)[1])
    new_components = read_components(_load_sbom(new)[1])
    old_audit = new_audit = None
    if db_path is not None:
        with VulnDb.open(db_path, readonly=True) as db:
            old_audit = run_audit(old_components, db, db.analyses())
            new_audit = run_audit(new_components, db, db.analyses())
    result = diff_sboms(old_components, new_components, old_audit, new_audit)
    if as_json:
        _echo_json({"old": str(old), "new": str(new), **result.to_json()})
        return
    click.echo(
        f"{old} -> {new}: {len(result.added)} added, {len(result.removed)} removed, "
        f"{len(result.changed)} changed, {result.unchanged} unchanged"
    )
    for c in result.added:
        click.echo(f"  + {c.label}")
    for c in result.removed:
        click.echo(f"  - {c.label}")
    for change in result.changed:
        details = []
        for name in change.fields:
            before, after = getattr(change.old, name), getattr(change.new, name)
            if name == "version":
                details.append(f"version {before} -> {after}")
            else:
                details.append(f"{name} changed")
        click.echo(f"  ~ {change.new.name}: {'; '.join(details)}")
    if result.introduced is not None and result.fixed is not None:
        for f in result.introduced:
            click.echo(f"  vulnerability introduced: {f.vuln_id} in {f.component.label}")
        for f in result.fixed:
            click.echo(f"  vulnerability fixed: {f.vuln_id} in {f.component.label}")


# ---------------------------------------------------------------------- verify
@sbom.command()
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="A TUF repository directory (metadata/ and targets/).",
)
@click.option("--server", default=None, help="The update server's base URL (TUF under /tuf/).")
@click.option("--release", "release", required=True, help="The release, PRODUCT/VERSION.")
@click.option(
    "--root",
    "root_file",
    required=True,
    type=_INPUT,
    help="The trusted root.json to start from (never the repository's own).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the verified SBOM here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify(
    repo: Path | None,
    server: str | None,
    release: str,
    root_file: Path,
    out: Path | None,
    as_json: bool,
) -> None:
    """Fetch a release's SBOM through TUF and check it describes the published firmware.

    The metadata is verified by python-tuf from the given root, exactly as a
    pump does; the SBOM must be the one the firmware target names, and its
    firmware sha256 must be the firmware target's.

    Exit codes: 0 verified, 1 the repository cannot be reached, 4 verification failed.
    """
    from sbom.verify import fetch_verified_sbom, parse_release

    if (repo is None) == (server is None):
        raise click.UsageError("give exactly one of --repo and --server")
    product, version = parse_release(release)
    root = _read_document(root_file)
    verified = fetch_verified_sbom(
        root=root, product=product, version=version, repo=repo, server=server
    )
    if out is not None:
        _write(out, verified.sbom)
    if as_json:
        _echo_json(
            {
                "release": f"{product}/{version}",
                "verified": True,
                "firmware_sha256": verified.firmware_sha256,
                "sbom_sha256": verified.sbom_sha256,
                "release_counter": verified.release.release_counter,
                "out": str(out) if out else None,
            }
        )
    else:
        click.echo(
            f"{product}/{version}: SBOM {verified.sbom_sha256} verified through TUF; it "
            f"describes the published firmware {verified.firmware_sha256}"
        )


# ------------------------------------------------------------------------- vex
@sbom.group()
def vex() -> None:
    """Record, list, export, import and carry forward VEX analyses.

    Analyses live in the vulnerability store, append-only: a new analysis of
    the same vulnerability in the same component supersedes the earlier one,
    and both stay in the history. An analysis applies to every SBOM with the
    same component (same purl, or name and version, and same hashes).
    """


def _find_component(components: Sequence[Any], ref: str, file: Path) -> Any:
    matches = [c for c in components if ref in (c.bom_ref, c.purl)]
    if len(matches) != 1:
        problem = "is not a component" if not matches else "names several components"
        raise VexError(f"{ref!r} {problem} of {file} (give its bom-ref or purl)")
    return matches[0]


@vex.command("record")
@click.argument("file", type=_INPUT)
@_DB_OPTION
@click.option("--vuln", "vuln_id", required=True, help="The vulnerability, e.g. CVE-2018-25032.")
@click.option("--component", "ref", required=True, help="The component's bom-ref or purl.")
@click.option(
    "--state",
    required=True,
    type=click.Choice(STATES),
    help="The analysis state (CycloneDX impactAnalysisState).",
)
@click.option(
    "--justification",
    default=None,
    type=click.Choice(JUSTIFICATIONS),
    help="Why the component is not affected (with --state not_affected).",
)
@click.option(
    "--response",
    "responses",
    multiple=True,
    type=click.Choice(RESPONSES),
    help="The manufacturer's response; repeatable.",
)
@click.option("--detail", default="", help="Free-text explanation.")
@click.option("--author", required=True, help="Who made the analysis.")
@click.option("--json", "as_json", is_flag=True, help="Print the recorded analysis as JSON.")
def vex_record(
    file: Path,
    db_path: Path,
    vuln_id: str,
    ref: str,
    state: str,
    justification: str | None,
    responses: tuple[str, ...],
    detail: str,
    author: str,
    as_json: bool,
) -> None:
    """Record an analysis of a vulnerability in a component of SBOM FILE."""
    from sbom.model import component_identity, read_components
    from sbom.vex import Analysis, utc_timestamp
    from sbom.vulndb import VulnDb

    _, doc = _load_sbom(file)
    component = _find_component(read_components(doc), ref, file)
    identity, hashes = component_identity(component)
    analysis = Analysis(
        vuln_id=vuln_id,
        component=identity,
        hashes=hashes,
        state=state,
        justification=justification,
        responses=responses,
        detail=detail,
        author=author,
        timestamp=utc_timestamp(),
        bom_ref=component.bom_ref,
    )
    with VulnDb.open(db_path, create=True) as db:
        db.record_analyses([analysis])
    logger.info("recorded %s for %s in %s by %s", state, vuln_id, identity, author)
    if as_json:
        _echo_json({"vuln_id": vuln_id, "component": identity, **analysis.statement()})
    else:
        click.echo(f"recorded: {vuln_id} in {component.label}: {state}")


@vex.command("history")
@_DB_OPTION
@click.option("--vuln", "vuln_id", default=None, help="Only this vulnerability.")
@click.option("--component", "component", default=None, help="Only this purl or name@version.")
@click.option("--json", "as_json", is_flag=True, help="Print the history as JSON.")
def vex_history(db_path: Path, vuln_id: str | None, component: str | None, as_json: bool) -> None:
    """List every recorded analysis, oldest first."""
    from sbom.vulndb import VulnDb

    with VulnDb.open(db_path, readonly=True) as db:
        analyses = db.analyses([component] if component else None)
    if vuln_id:
        analyses = [a for a in analyses if a.vuln_id == vuln_id]
    if as_json:
        _echo_json(
            [
                {
                    "vuln_id": a.vuln_id,
                    "component": a.component,
                    "hashes": a.hashes,
                    **a.statement(),
                }
                for a in analyses
            ]
        )
        return
    for a in analyses:
        why = f" ({a.justification})" if a.justification else ""
        click.echo(f"{a.timestamp} {a.vuln_id} {a.component}: {a.state}{why} by {a.author}")


def _histories(analyses: Sequence[Any]) -> dict[tuple[str, str, str], list[Any]]:
    histories: dict[tuple[str, str, str], list[Any]] = {}
    for a in analyses:
        histories.setdefault(a.key, []).append(a)
    return histories


def _export(doc: dict[str, Any], components: Sequence[Any], analyses: Sequence[Any]) -> bytes:
    from sbom.validation import validate_sbom
    from sbom.vex import build_vex

    vex_doc = build_vex(
        _histories(analyses), components, subject=doc.get("metadata", {}).get("component")
    )
    data = (json.dumps(vex_doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    validate_sbom(data)  # never hand out a document other tools would refuse
    return data


def _applicable(components: Sequence[Any], analyses: Sequence[Any]) -> list[Any]:
    from sbom.model import component_identity

    keys = {component_identity(c) for c in components}
    return [a for a in analyses if (a.component, a.hashes) in keys]


@vex.command("export")
@click.argument("file", type=_INPUT)
@_DB_OPTION
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the CycloneDX 1.6 VEX document.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def vex_export(file: Path, db_path: Path, out: Path, as_json: bool) -> None:
    """Export the analyses of SBOM FILE's components as CycloneDX 1.6 VEX.

    Each vulnerability entry carries the current analysis and, in
    pumpguard:vex:history properties, every earlier one, so the history
    survives a round trip through 'vex import'.
    """
    from sbom.model import component_identity, read_components
    from sbom.vulndb import VulnDb

    _, doc = _load_sbom(file)
    components = read_components(doc)
    with VulnDb.open(db_path, readonly=True) as db:
        analyses = _applicable(
            components, db.analyses({component_identity(c)[0] for c in components})
        )
    data = _export(doc, components, analyses)
    _write(out, data)
    count = len(_histories(analyses))
    if as_json:
        _echo_json({"out": str(out), "analyses": count, "statements": len(analyses)})
    else:
        click.echo(f"wrote {out}: {count} analyses ({len(analyses)} statements with history)")


@vex.command("import")
@click.argument("file", type=_INPUT)
@_DB_OPTION
@click.option(
    "--sbom",
    "sbom_file",
    type=_INPUT,
    default=None,
    help="The SBOM the VEX refers to, when its affects refs are not defined in it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def vex_import(file: Path, db_path: Path, sbom_file: Path | None, as_json: bool) -> None:
    """Import the analyses of a CycloneDX 1.6 VEX document into the store.

    Statements already in the store are not recorded again.
    """
    from sbom.model import read_components
    from sbom.vulndb import VulnDb

    components = read_components(_load_sbom(sbom_file)[1]) if sbom_file else []
    analyses = _vex_analyses([file], components)
    with VulnDb.open(db_path, create=True) as db:
        added = db.record_analyses(analyses, origin=f"imported from {file}")
    if as_json:
        _echo_json({"file": str(file), "statements": len(analyses), "added": added})
    else:
        click.echo(f"imported {file}: {added} new of {len(analyses)} statements")


@vex.command("carry")
@click.argument("old", type=_INPUT)
@click.argument("new", type=_INPUT)
@_DB_OPTION
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the new release's VEX document (CycloneDX 1.6) here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what carries over as JSON.")
def vex_carry(old: Path, new: Path, db_path: Path, out: Path | None, as_json: bool) -> None:
    """Carry the analyses of release OLD forward to release NEW.

    An analysis carries over when NEW has the same component: the same purl
    (or name and version) and the same hashes. Analyses of components that
    changed or were removed do not; they are listed so they can be redone.
    """
    from sbom.model import component_identity, read_components
    from sbom.vulndb import VulnDb

    _, old_doc = _load_sbom(old)
    _, new_doc = _load_sbom(new)
    old_components, new_components = read_components(old_doc), read_components(new_doc)
    identities = {component_identity(c)[0] for c in (*old_components, *new_components)}
    with VulnDb.open(db_path, readonly=True) as db:
        known = db.analyses(identities)
    previous = _applicable(old_components, known)
    new_keys = {component_identity(c) for c in new_components}
    carried = [a for a in previous if (a.component, a.hashes) in new_keys]
    dropped = [a for a in previous if (a.component, a.hashes) not in new_keys]
    if out is not None:
        _write(out, _export(new_doc, new_components, _applicable(new_components, known)))
    current = {a.key: a for a in carried}
    lost = {a.key: a for a in dropped}
    if as_json:
        _echo_json(
            {
                "carried": [
                    {"vuln_id": k[0], "component": k[1], "state": a.state}
                    for k, a in current.items()
                ],
                "not_carried": [
                    {"vuln_id": k[0], "component": k[1], "state": a.state} for k, a in lost.items()
                ],
                "out": str(out) if out else None,
            }
        )
        return
    click.echo(f"{len(current)} analyses carry over to {new}; {len(lost)} do not")
    for key, a in lost.items():
        click.echo(f"  not carried (component changed or removed): {key[0]} in {key[1]}: {a.state}")
    if out is not None:
        click.echo(f"wrote {out}")


# ---------------------------------------------------------------------- vulndb
@click.group()
def vulndb() -> None:
    """Import vulnerability feeds into the offline store, and describe it.

    The store is one SQLite file (--db or $PUMPGUARD_VULNDB). It records every
    import: the source, the file, the sha256 of what was read, counts and time.
    """


@contextmanager
def _progress(label: str) -> Iterator[Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task(label, total=None)
        yield lambda n: progress.advance(task, n)


@vulndb.command("import")
@click.argument(
    "paths",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, readable=True, path_type=Path),
)
@_DB_OPTION
@click.option(
    "--format",
    "kind",
    type=click.Choice(["auto", "osv", "nvd", "kev"]),
    default="auto",
    show_default=True,
    help="What the files are; auto recognises each by its content.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the import records as JSON.")
def vulndb_import(paths: tuple[Path, ...], db_path: Path, kind: str, as_json: bool) -> None:
    """Import OSV folders or all.zip files, NVD CVE JSON 2.0 feeds, the CISA KEV catalog.

    Each file is one transaction: a bad file (malformed JSON, corrupt zip,
    wrong schema) is refused with its name and leaves the store as it was.
    The store is created if it does not exist.

    Exit codes: 0 imported, 1 the store cannot be written, 2 a feed is invalid.
    """
    from sbom.feeds import read_feed
    from sbom.vulndb import VulnDb

    records = []
    with VulnDb.open(db_path, create=True) as db:
        for path in paths:
            with _progress(f"reading {path.name}") as tick:
                feed = read_feed(path, kind, progress=tick)
            with _progress(f"importing {path.name}") as tick:
                record = db.import_feed(feed, progress=tick)
            records.append(record)
            if not as_json:
                removed = f", {record.removed} withdrawn or rejected" if record.removed else ""
                click.echo(
                    f"imported {record.source} {path}: {record.advisories} advisories, "
                    f"{record.kev_entries} KEV entries{removed} (sha256 {record.sha256})"
                )
    if as_json:
        _echo_json([r.to_json() for r in records])


@vulndb.command("status")
@_DB_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def vulndb_status(db_path: Path, as_json: bool) -> None:
    """Show what the store holds and every import made into it."""
    from sbom.vulndb import VulnDb

    with VulnDb.open(db_path, readonly=True) as db:
        counts, imports, pending = db.counts(), db.imports(), db.pending_reimports()
    if as_json:
        _echo_json(
            {
                "file": str(db_path),
                "counts": counts,
                "imports": [r.to_json() for r in imports],
                "pending_reimports": pending,
            }
        )
        return
    click.echo(
        f"{db_path}: {counts['osv']} OSV advisories, {counts['nvd']} NVD CVEs, "
        f"{counts['kev']} KEV entries, {counts['vex_analyses']} VEX statements"
    )
    for source, since in sorted(pending.items()):
        click.echo(
            f"  re-import needed: the {source.upper()} advisories were removed by the store "
            f"upgrade of {since}; audits refuse to run until they are imported again"
        )
    for r in imports:
        click.echo(
            f"  {r.imported_at} {r.source} {r.name}: {r.advisories} advisories, "
            f"{r.kev_entries} KEV (sha256 {r.sha256})"
        )
