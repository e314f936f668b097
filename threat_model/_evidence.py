"""The SBOM part of the assurance package: check, audit and VEX of a verified SBOM.

Reuses the ``sbom`` package's functions (not its CLI), and makes every output
reproducible: support dates are judged as of the package's recorded day, and
the VEX document's time and serial number derive from its content.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pumpguard.fsutil import FileTooLargeError, read_capped
from sbom.audit import AuditResult
from sbom.audit import audit as run_audit
from sbom.audit_json import audit_document
from sbom.check import CheckReport, check_sbom
from sbom.errors import SbomError
from sbom.model import SbomComponent, component_identity, load_sbom, read_components
from sbom.report_html import render_report
from sbom.validation import validate_sbom
from sbom.verify import VerifiedSbom
from sbom.vex import Analysis, build_vex, parse_vex
from sbom.vulndb import VulnDb
from threat_model.errors import AssuranceError

__all__ = ["POLICY", "SbomEvidence", "sbom_evidence"]

#: The SBOM policy a premarket submission is judged by.
POLICY = "fda"
_HORIZON_DAYS = 365
_MAX_VEX = 256 << 20


@dataclass(frozen=True)
class SbomEvidence:
    """The SBOM files of the package and the facts the summary needs.

    Attributes:
        files: Package path -> bytes.
        check: The SBOM check.
        audit: The vulnerability audit.
        subject: The SBOM's ``metadata.component`` (the firmware).
    """

    files: dict[str, bytes]
    check: CheckReport
    audit: AuditResult
    subject: dict[str, Any]


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def sbom_evidence(
    verified: VerifiedSbom,
    *,
    db_path: Path,
    vex_files: Sequence[Path],
    as_of: datetime.date,
) -> SbomEvidence:
    """Check and audit a verified SBOM and export its VEX.

    Args:
        verified: The SBOM, verified through TUF.
        db_path: The vulnerability store.
        vex_files: CycloneDX VEX documents applied on top of the store's analyses.
        as_of: The day support dates are judged on.

    Raises:
        AssuranceError: The store or a VEX file cannot be read, or is invalid.
    """
    try:
        doc = load_sbom(verified.sbom, "sbom.cdx.json")
        components = read_components(doc)
        check = check_sbom(doc, today=as_of, horizon_days=_HORIZON_DAYS)
        extra, inputs = _vex_inputs(vex_files, components)
        with VulnDb.open(db_path, readonly=True) as db:
            stored = db.analyses({component_identity(c)[0] for c in components})
            result = run_audit(components, db, stored + extra)
            imports = db.imports()
    except SbomError as e:
        raise AssuranceError(f"cannot audit the SBOM: {e}") from e
    subject = doc.get("metadata", {}).get("component", {})
    files = dict(inputs)
    files["sbom/sbom.cdx.json"] = verified.sbom
    files["sbom/check.json"] = _json({"file": "sbom.cdx.json", **check.to_json(POLICY)})
    files["sbom/check.txt"] = _check_text(check).encode("utf-8")
    files["vulnerabilities/audit.json"] = _json(
        audit_document(
            result,
            sbom={
                "file": "sbom/sbom.cdx.json",
                "sha256": verified.sbom_sha256,
                "serialNumber": doc.get("serialNumber"),
            },
            store={"file": db_path.name},
            imports=imports,
            context={"as_of": as_of.isoformat(), "vex_inputs": sorted(inputs)},
        )
    )
    files["vulnerabilities/audit.html"] = render_report(
        title="sbom.cdx.json",
        subject=subject,
        components=components,
        result=result,
        check=check,
        imports=imports,
        generated=f"as of {as_of.isoformat()}",
    ).encode("utf-8")
    files["vulnerabilities/vex.cdx.json"] = _vex(doc, components, stored, verified, as_of)
    return SbomEvidence(files, check, result, subject)


def _check_text(check: CheckReport) -> str:
    failures = check.failures(POLICY)
    verdict = "passes" if not failures else "FAILS"
    lines = [f"sbom.cdx.json: {check.components} components; policy {POLICY} {verdict}"]
    for p in check.problems:
        mark = "FAIL" if p in failures else "note"
        lines.append(f"  {mark} [{p.level}] {p.component or 'document'}: {p.element}: {p.message}")
    return "\n".join(lines) + "\n"


def _vex_inputs(
    paths: Sequence[Path], components: Sequence[SbomComponent]
) -> tuple[list[Analysis], dict[str, bytes]]:
    analyses: list[Analysis] = []
    copies: dict[str, bytes] = {}
    for i, path in enumerate(paths, start=1):
        try:
            data = read_capped(path, _MAX_VEX, f"VEX file {path}")
        except FileTooLargeError as e:
            raise AssuranceError(str(e)) from e
        except OSError as e:
            raise AssuranceError(f"cannot read VEX file {path}: {e.strerror or e}") from e
        analyses += parse_vex(load_sbom(data, str(path)), str(path), components)
        # Numbered, so two inputs with the same name cannot collide.
        copies[f"vulnerabilities/vex-inputs/{i:02d}-{path.name}"] = data
    return analyses, copies


def _vex(
    doc: dict[str, Any],
    components: Sequence[SbomComponent],
    stored: Sequence[Analysis],
    verified: VerifiedSbom,
    as_of: datetime.date,
) -> bytes:
    """The store's analyses of this SBOM as CycloneDX VEX, reproducibly."""
    keys = {component_identity(c) for c in components}
    histories: dict[tuple[str, str, str], list[Analysis]] = {}
    for a in stored:
        if (a.component, a.hashes) in keys:
            histories.setdefault(a.key, []).append(a)
    times = [a.timestamp for history in histories.values() for a in history]
    when = _parse_time(max(times)) if times else _sbom_time(doc, as_of)
    vex = build_vex(
        histories,
        components,
        subject=doc.get("metadata", {}).get("component"),
        timestamp=when,
        serial_number=uuid.UUID(int=0),
    )
    # The serial number names this content, so the same analyses give the same document.
    digest = hashlib.sha256(json.dumps(vex, sort_keys=True).encode("utf-8")).hexdigest()
    name = f"urn:pumpguard:vex:{verified.sbom_sha256}:{digest}"
    vex["serialNumber"] = uuid.uuid5(uuid.NAMESPACE_URL, name).urn
    data = _json(vex)
    try:
        validate_sbom(data)
    except SbomError as e:
        raise AssuranceError(f"the exported VEX is not valid CycloneDX 1.6: {e}") from e
    return data


def _parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _sbom_time(doc: dict[str, Any], as_of: datetime.date) -> datetime.datetime:
    stamp = doc.get("metadata", {}).get("timestamp")
    if isinstance(stamp, str):
        try:
            return _parse_time(stamp)
        except ValueError:
            pass
    return datetime.datetime.combine(as_of, datetime.time(), tzinfo=datetime.UTC)
