"""The premarket assurance package of one release: one reproducible zip.

:func:`build_package` collects, for release ``P/V``: its SBOM (verified
through TUF and bound to the firmware) and SBOM check, the vulnerability audit
and VEX, the threat model report and traceability matrix, the static analysis
with its nosec register, the test results, a ``summary.json`` of open risks,
an ``index.html`` a reviewer opens first, and a ``manifest.json`` with the
sha256 and size of every file.

Building twice from the same inputs gives byte-identical zips except for one
recorded timestamp, in ``manifest.json`` and ``index.html``; ``recorded_at``
pins it. Support dates are judged as of the recorded day.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pumpguard
from pumpguard.fsutil import FileTooLargeError, atomic_write_bytes, read_capped
from sbom.errors import SbomError, SbomVerificationError
from sbom.verify import VerifiedSbom, fetch_verified_sbom, parse_release
from threat_model._evidence import sbom_evidence
from threat_model._index import open_risks, render_index
from threat_model._junit import JunitError, JunitSummary, read_junit
from threat_model._zip import deterministic_zip
from threat_model.errors import AssuranceError
from threat_model.model import ThreatModel
from threat_model.report import write_report
from threat_model.sast import default_path, run_sast
from threat_model.trace import TraceResult

__all__ = ["PackageInputError", "ReleaseVerificationError", "build_package", "normalise_time"]

_MAX_ROOT = 16 << 20


class PackageInputError(AssuranceError):
    """An input of the package is missing or invalid (release, file, time)."""

    exit_code = 2


class ReleaseVerificationError(AssuranceError):
    """The release's SBOM does not verify through TUF, or is not published."""

    exit_code = 4


def normalise_time(text: str) -> str:
    """An ISO 8601 time with a zone, as UTC ``YYYY-MM-DDTHH:MM:SSZ``.

    Raises:
        PackageInputError: Not ISO 8601, or without a time zone.
    """
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise PackageInputError(f"--recorded-at {text!r} is not an ISO 8601 time") from e
    if when.utcoffset() is None:
        raise PackageInputError(f"--recorded-at {text!r} has no time zone (add Z or +00:00)")
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_package(
    *,
    release: str,
    root: Path,
    db: Path,
    out: Path,
    repo: Path | None = None,
    server: str | None = None,
    vex: Sequence[Path] = (),
    junit: Path | None = None,
    recorded_at: str | None = None,
    model: ThreatModel | None = None,
    sast_path: Path | None = None,
) -> Path:
    """Build the assurance package of ``release`` into the zip ``out``.

    Args:
        release: ``PRODUCT/VERSION``.
        root: The trusted ``root.json`` to verify the repository from.
        db: The vulnerability store (SQLite).
        out: The zip to write (atomically).
        repo: A TUF repository directory, or
        server: the update server's base URL.
        vex: CycloneDX VEX documents applied on top of the store's analyses.
        junit: A JUnit XML report of the test run; without it no test outcome is known.
        recorded_at: The package's one timestamp (ISO 8601 with zone); default now.
        model: The threat model; default :func:`threat_model.catalogue.build_model`.
        sast_path: What to analyse; default the project's packages.

    Returns:
        ``out``.

    Raises:
        PackageInputError: A bad release name, time, or missing/corrupt input file.
        ReleaseVerificationError: The release is not published or does not verify.
        AssuranceError: Anything else failed (unreachable server, a tool missing).
    """
    stamp = normalise_time(
        recorded_at or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    )
    as_of = datetime.date.fromisoformat(stamp[:10])
    try:
        product, version = parse_release(release)
    except SbomError as e:
        raise PackageInputError(f"--release: {e}") from e
    if (repo is None) == (server is None):
        raise PackageInputError("give exactly one of a repository directory or a server URL")
    root_bytes = _read_input(root, "--root", _MAX_ROOT)
    for path, option in ((db, "--db"), *((v, "--vex") for v in vex)):
        if not path.is_file():
            raise PackageInputError(f"{option} {path}: no such file")
    junit_data: bytes | None = None
    junit_summary: JunitSummary | None = None
    if junit is not None:
        try:
            junit_data, junit_summary = read_junit(junit)
        except JunitError as e:
            raise PackageInputError(f"--junit: {e}") from e
    if not out.parent.is_dir():
        raise PackageInputError(f"--out {out}: folder {out.parent} does not exist")

    verified = _verify(root_bytes, product, version, repo, server)
    evidence = sbom_evidence(verified, db_path=db, vex_files=vex, as_of=as_of)
    model = model if model is not None else _catalogue()
    trace = _trace(model, junit) if junit is not None else None
    files = dict(evidence.files)
    files["sbom/verification.json"] = _json(
        {
            "release": f"{product}/{version}",
            "verified_through": "TUF (python-tuf ngclient), from the trusted root given",
            "trusted_root_sha256": hashlib.sha256(root_bytes).hexdigest(),
            "firmware_target": f"{product}/{version}/firmware.img",
            "firmware_sha256": verified.firmware_sha256,
            "sbom_target": verified.release.sbom_path,
            "sbom_sha256": verified.sbom_sha256,
            "release_counter": verified.release.release_counter,
            "sbom_bound_to_firmware": True,
        }
    )
    with tempfile.TemporaryDirectory(prefix="pumpguard-assurance-") as work:
        stage = Path(work)
        write_report(model, stage / "threat-model", trace)
        sast = run_sast(sast_path or default_path(), stage / "sast")
        files.update(_collect(stage))
    if junit_data is not None and junit_summary is not None:
        files["tests/junit.xml"] = junit_data
        files["tests/summary.json"] = _json(junit_summary.to_json())
    risks = open_risks(model=model, trace=trace, evidence=evidence, sast=sast, junit=junit_summary)
    files["summary.json"] = _json({"release": f"{product}/{version}", "open_risks": risks})
    generator = f"pumpguard {pumpguard.__version__}"
    files["index.html"] = render_index(
        release=f"{product}/{version}",
        recorded_at=stamp,
        generator=generator,
        facts={
            "firmware sha256": verified.firmware_sha256,
            "SBOM sha256": verified.sbom_sha256,
            "release counter": str(verified.release.release_counter),
            "support dates judged as of": as_of.isoformat(),
            "threat model": model.name,
            "test results": "JUnit report given" if junit is not None else "none given",
        },
        risks=risks,
        files=files,
    )
    files["manifest.json"] = _manifest(f"{product}/{version}", stamp, generator, files)
    try:
        atomic_write_bytes(out, deterministic_zip(files))
    except OSError as e:
        raise AssuranceError(f"cannot write {out}: {e.strerror or e}") from e
    return out


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _read_input(path: Path, option: str, limit: int) -> bytes:
    try:
        return read_capped(path, limit, f"{option} {path}")
    except FileTooLargeError as e:
        raise PackageInputError(str(e)) from e
    except OSError as e:
        raise PackageInputError(f"{option} {path}: {e.strerror or e}") from e


def _verify(
    root: bytes, product: str, version: str, repo: Path | None, server: str | None
) -> VerifiedSbom:
    try:
        return fetch_verified_sbom(
            root=root, product=product, version=version, repo=repo, server=server
        )
    except SbomVerificationError as e:
        raise ReleaseVerificationError(f"release {product}/{version}: {e}") from e
    except SbomError as e:
        raise AssuranceError(f"release {product}/{version}: {e}") from e


def _catalogue() -> ThreatModel:
    # Imported here: the catalogue is the largest module and only the package needs it.
    from threat_model.catalogue import build_model

    return build_model()


def _trace(model: ThreatModel, junit: Path) -> TraceResult:
    from threat_model.check import trace

    return trace(model, junit=junit)


def _collect(stage: Path) -> dict[str, bytes]:
    return {
        p.relative_to(stage).as_posix(): p.read_bytes()
        for p in sorted(stage.rglob("*"))
        if p.is_file()
    }


def _manifest(release: str, stamp: str, generator: str, files: dict[str, bytes]) -> bytes:
    return _json(
        {
            "release": release,
            "recorded_at": stamp,
            "generator": generator,
            "files": [
                {
                    "path": name,
                    "sha256": hashlib.sha256(files[name]).hexdigest(),
                    "size": len(files[name]),
                }
                for name in sorted(files)
            ],
        }
    )
