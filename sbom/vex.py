"""VEX analyses: what the manufacturer concluded about a vulnerability in a component.

An :class:`Analysis` is one statement ("CVE-2018-25032 in zlib 1.2.11: not
affected, the vulnerable code is not present, said J. Doe on 2025-03-01").
Statements are never changed or deleted; a new statement about the same
vulnerability and component supersedes the earlier one, and both stay in the
history (the store enforces this, see :mod:`sbom.vulndb`).

This module builds and reads CycloneDX 1.6 VEX documents. A document exported
here is self-contained: it lists the components its statements are about (with
their package URLs and hashes), and keeps each statement's history in
``pumpguard:vex:history`` properties, so that importing it into another store
yields the same analyses, history included. It does no I/O.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pumpguard
from sbom.errors import VexError
from sbom.model import SbomComponent, component_identity, read_components

__all__ = [
    "AUTHOR_PROPERTY",
    "HISTORY_PROPERTY",
    "JUSTIFICATIONS",
    "RESPONSES",
    "STATES",
    "Analysis",
    "build_vex",
    "parse_vex",
    "utc_timestamp",
]

#: CycloneDX 1.6 ``impactAnalysisState`` values.
STATES = (
    "resolved",
    "resolved_with_pedigree",
    "exploitable",
    "in_triage",
    "false_positive",
    "not_affected",
)
#: CycloneDX 1.6 ``impactAnalysisJustification`` values.
JUSTIFICATIONS = (
    "code_not_present",
    "code_not_reachable",
    "requires_configuration",
    "requires_dependency",
    "requires_environment",
    "protected_by_compiler",
    "protected_at_runtime",
    "protected_at_perimeter",
    "protected_by_mitigating_control",
)
#: CycloneDX 1.6 analysis ``response`` values.
RESPONSES = ("can_not_fix", "will_not_fix", "update", "rollback", "workaround_available")

#: Property of a VEX vulnerability naming who made the latest statement.
AUTHOR_PROPERTY = "pumpguard:vex:author"
#: Property of a VEX vulnerability holding one earlier or current statement as JSON.
HISTORY_PROPERTY = "pumpguard:vex:history"

_MAX_TEXT = 8192


@dataclasses.dataclass(frozen=True)
class Analysis:
    """One statement about a vulnerability in a component.

    Attributes:
        vuln_id: The vulnerability, e.g. ``CVE-2018-25032``.
        component: The component's identity (:func:`sbom.model.component_identity`):
            its canonical package URL or ``name@version``.
        hashes: The component's hashes as :func:`component_identity` joins them.
        state: One of :data:`STATES`.
        justification: One of :data:`JUSTIFICATIONS`, or ``None``.
        responses: Values of :data:`RESPONSES`.
        detail: Free text explaining the analysis.
        author: Who made the statement.
        timestamp: When, ISO 8601 in UTC (``2025-03-01T12:00:00Z``).
        bom_ref: The component's bom-ref in the SBOM it was made about, if known.
        undated: True when the VEX document it was read from gave no time (no
            ``lastUpdated``, ``firstIssued`` or ``metadata.timestamp``, all
            optional in CycloneDX 1.6): ``timestamp`` is then when it was
            imported, not when the statement was made.
    """

    vuln_id: str
    component: str
    hashes: str
    state: str
    justification: str | None = None
    responses: tuple[str, ...] = ()
    detail: str = ""
    author: str = ""
    timestamp: str = ""
    bom_ref: str | None = None
    undated: bool = False

    def __post_init__(self) -> None:
        where = f"analysis of {self.vuln_id} in {self.component}"
        if not self.vuln_id or not self.vuln_id.strip() or len(self.vuln_id) > 128:
            raise VexError("an analysis needs a vulnerability id")
        if not self.component:
            raise VexError(f"{where}: needs a component")
        if self.state not in STATES:
            raise VexError(f"{where}: state {self.state!r} is not one of {', '.join(STATES)}")
        if self.justification is not None and self.justification not in JUSTIFICATIONS:
            raise VexError(
                f"{where}: justification {self.justification!r} is not one of "
                f"{', '.join(JUSTIFICATIONS)}"
            )
        if self.justification is not None and self.state != "not_affected":
            raise VexError(f"{where}: a justification is only given with state not_affected")
        if self.state == "not_affected" and self.justification is None and not self.detail:
            # CISA's minimum VEX requirements: not_affected needs a reason.
            raise VexError(f"{where}: not_affected needs a justification or a detail")
        for response in self.responses:
            if response not in RESPONSES:
                raise VexError(
                    f"{where}: response {response!r} is not one of {', '.join(RESPONSES)}"
                )
        if len(set(self.responses)) != len(self.responses):
            raise VexError(f"{where}: a response is repeated")
        if len(self.detail) > _MAX_TEXT or len(self.author) > 256:
            raise VexError(f"{where}: detail or author is too long")
        _parse_time(self.timestamp, where)

    @property
    def key(self) -> tuple[str, str, str]:
        """``(vuln_id, component, hashes)``: the statements one history is about."""
        return self.vuln_id, self.component, self.hashes

    def statement(self) -> dict[str, Any]:
        """The statement without its subject, as a history entry holds it.

        ``undated`` is only present (``true``) for an undated statement.
        """
        result: dict[str, Any] = {
            "state": self.state,
            "justification": self.justification,
            "responses": list(self.responses),
            "detail": self.detail,
            "author": self.author,
            "timestamp": self.timestamp,
        }
        if self.undated:
            result["undated"] = True
        return result


def _parse_time(text: str, where: str) -> datetime.datetime:
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise VexError(f"{where}: timestamp {text!r} is not an ISO 8601 time") from e
    if when.utcoffset() is None:
        raise VexError(f"{where}: timestamp {text!r} has no time zone")
    return when


def utc_timestamp(when: datetime.datetime | None = None) -> str:
    """A time as analyses record it: ISO 8601, UTC, whole seconds, ``Z``."""
    moment = when or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_vex(
    histories: Mapping[tuple[str, str, str], Sequence[Analysis]],
    components: Sequence[SbomComponent],
    *,
    subject: Mapping[str, Any] | None = None,
    timestamp: datetime.datetime | None = None,
    serial_number: uuid.UUID | None = None,
) -> dict[str, Any]:
    """Build a CycloneDX 1.6 VEX document.

    Args:
        histories: For each ``(vuln_id, component, hashes)``, its statements
            oldest first; the last one is the current analysis.
        components: Components of the SBOM the statements are about; each
            statement's component must be among them (by identity).
        subject: The SBOM's ``metadata.component`` (the firmware), if any.
        timestamp: Time of the document; default now.
        serial_number: Serial number; default random.

    Returns:
        The document as a JSON object (validate with :func:`sbom.validate_sbom`).

    Raises:
        VexError: A statement's component is not among ``components``.
    """
    by_identity = {component_identity(c): c for c in components}
    used: dict[str, dict[str, Any]] = {}
    vulnerabilities: list[dict[str, Any]] = []
    for key in sorted(histories):
        history = list(histories[key])
        if not history:
            continue
        vuln_id, identity, hashes = key
        component = by_identity.get((identity, hashes))
        if component is None:
            raise VexError(f"{vuln_id}: component {identity} is not in the SBOM")
        ref = component.bom_ref or identity
        used.setdefault(ref, _component_json(component, ref))
        vulnerabilities.append(_vulnerability(vuln_id, ref, history))
    metadata: dict[str, Any] = {
        "timestamp": utc_timestamp(timestamp),
        "tools": {
            "components": [
                {"type": "application", "name": "pumpguard", "version": pumpguard.__version__}
            ]
        },
    }
    if subject is not None:
        metadata["component"] = {
            k: subject[k] for k in ("type", "name", "version", "bom-ref", "hashes") if k in subject
        }
    return {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": (serial_number or uuid.uuid4()).urn,
        "version": 1,
        "metadata": metadata,
        "components": list(used.values()),
        "vulnerabilities": vulnerabilities,
    }


def _component_json(component: SbomComponent, ref: str) -> dict[str, Any]:
    result: dict[str, Any] = {"type": component.type, "name": component.name, "bom-ref": ref}
    if component.version:
        result["version"] = component.version
    if component.hashes:
        result["hashes"] = [{"alg": alg, "content": content} for alg, content in component.hashes]
    if component.purl:
        result["purl"] = component.purl
    if component.cpe:
        result["cpe"] = component.cpe
    return result


def _vulnerability(vuln_id: str, ref: str, history: list[Analysis]) -> dict[str, Any]:
    current = history[-1]
    analysis: dict[str, Any] = {"state": current.state}
    if current.justification:
        analysis["justification"] = current.justification
    if current.responses:
        analysis["response"] = list(current.responses)
    if current.detail:
        analysis["detail"] = current.detail
    analysis["firstIssued"] = history[0].timestamp
    analysis["lastUpdated"] = current.timestamp
    properties = [{"name": AUTHOR_PROPERTY, "value": current.author}] if current.author else []
    properties += [
        {"name": HISTORY_PROPERTY, "value": json.dumps(a.statement(), sort_keys=True)}
        for a in history
    ]
    entry: dict[str, Any] = {"id": vuln_id}
    if vuln_id.startswith("CVE-"):
        entry["source"] = {"name": "NVD", "url": f"https://nvd.nist.gov/vuln/detail/{vuln_id}"}
    entry["analysis"] = analysis
    entry["affects"] = [{"ref": ref}]
    entry["properties"] = properties
    return entry


def parse_vex(
    doc: Mapping[str, Any],
    where: str,
    sbom_components: Iterable[SbomComponent] = (),
    *,
    now: datetime.datetime | None = None,
) -> list[Analysis]:
    """Read the analyses of a (schema-validated) CycloneDX VEX document.

    A statement's time is its ``lastUpdated``, else ``firstIssued``, else the
    document's ``metadata.timestamp``. CycloneDX 1.6 makes all three optional:
    without any, the statement gets ``now`` and is marked
    :attr:`Analysis.undated`.

    Args:
        doc: The document.
        where: Its file name, for messages.
        sbom_components: Components of the SBOM the document refers to, for
            ``affects`` refs (plain or BOM-Link) that the document itself does
            not define.
        now: The time of reading, for undated statements; default now.

    Returns:
        Every statement, history included, oldest first per subject.

    Raises:
        VexError: A vulnerability has no analysis, or affects a component
            that neither the document nor the SBOM defines; the message names
            the vulnerability and the ref.
    """
    known = {c.bom_ref: c for c in sbom_components if c.bom_ref}
    known.update({c.bom_ref: c for c in read_components(dict(doc)) if c.bom_ref})
    default_time = doc.get("metadata", {}).get("timestamp") or None
    read_at = utc_timestamp(now)
    result: list[Analysis] = []
    for i, vuln in enumerate(doc.get("vulnerabilities", [])):
        vuln_id = vuln.get("id")
        here = f"{where}: vulnerabilities[{i}] ({vuln_id})"
        if not isinstance(vuln_id, str):
            raise VexError(f"{where}: vulnerabilities[{i}] has no id")
        analysis = vuln.get("analysis")
        if not isinstance(analysis, dict) or "state" not in analysis:
            raise VexError(f"{here}: has no analysis state")
        properties = vuln.get("properties", [])
        author = next((p.get("value", "") for p in properties if p["name"] == AUTHOR_PROPERTY), "")
        history = [p.get("value", "") for p in properties if p["name"] == HISTORY_PROPERTY]
        for affect in vuln.get("affects", []):
            ref = affect["ref"]
            local = ref.rpartition("#")[2] if ref.startswith("urn:cdx:") else ref
            component = known.get(local)
            if component is None:
                raise VexError(f"{here}: affects {ref!r}, which is not a component it defines")
            identity, hashes = component_identity(component)
            when = analysis.get("lastUpdated") or analysis.get("firstIssued") or default_time
            statements = [_history_entry(text, here) for text in history] or [
                {
                    "state": analysis["state"],
                    "justification": analysis.get("justification"),
                    "responses": analysis.get("response", []),
                    "detail": analysis.get("detail", ""),
                    "author": author,
                    "timestamp": when or read_at,
                    "undated": not when,
                }
            ]
            for statement in statements:
                result.append(
                    Analysis(
                        vuln_id=vuln_id,
                        component=identity,
                        hashes=hashes,
                        state=statement["state"],
                        justification=statement["justification"],
                        responses=tuple(statement["responses"]),
                        detail=statement["detail"],
                        author=statement["author"],
                        timestamp=statement["timestamp"],
                        bom_ref=local,
                        undated=statement.get("undated", False),
                    )
                )
    return result


def _history_entry(text: str, where: str) -> dict[str, Any]:
    try:
        entry = json.loads(text)
    except ValueError as e:
        raise VexError(f"{where}: a {HISTORY_PROPERTY} property is not JSON") from e
    expected = {"state", "justification", "responses", "detail", "author", "timestamp"}
    if not isinstance(entry, dict) or set(entry) - {"undated"} != expected:
        raise VexError(f"{where}: a {HISTORY_PROPERTY} property lacks fields of {sorted(expected)}")
    if not isinstance(entry.get("undated", False), bool):
        raise VexError(f"{where}: a {HISTORY_PROPERTY} property's undated is not a boolean")
    if not isinstance(entry["responses"], list):
        raise VexError(f"{where}: a {HISTORY_PROPERTY} property's responses is not a list")
    for key in ("state", "detail", "author", "timestamp"):
        if not isinstance(entry[key], str):
            raise VexError(f"{where}: a {HISTORY_PROPERTY} property's {key} is not a string")
    return entry
