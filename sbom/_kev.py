"""The CISA Known Exploited Vulnerabilities catalog (JSON) to :class:`KevEntry` objects."""

from __future__ import annotations

import re
from typing import Any, TypeGuard

from sbom.advisory import KevEntry
from sbom.errors import FeedError

__all__ = ["is_kev_catalog", "parse_kev"]

_CVE_RE = re.compile(r"^CVE-\d{4}-\d{4,}$")


def is_kev_catalog(doc: object) -> TypeGuard[dict[str, Any]]:
    """Whether a JSON value looks like the KEV catalog."""
    return (
        isinstance(doc, dict)
        and "catalogVersion" in doc
        and isinstance(doc.get("vulnerabilities"), list)
    )


def parse_kev(doc: object, where: str) -> tuple[str, list[KevEntry]]:
    """Parse the KEV catalog.

    Args:
        doc: The parsed JSON of ``known_exploited_vulnerabilities.json``.
        where: The file name, for error messages.

    Returns:
        The catalog version and its entries.

    Raises:
        FeedError: ``doc`` is not the catalog or an entry is malformed.
    """
    if not is_kev_catalog(doc):
        raise FeedError(
            f"{where}: not the CISA KEV catalog (needs catalogVersion, vulnerabilities)"
        )
    entries: list[KevEntry] = []
    for i, raw in enumerate(doc["vulnerabilities"]):
        here = f"{where}: vulnerabilities[{i}]"
        if not isinstance(raw, dict):
            raise FeedError(f"{here} must be an object")
        cve = raw.get("cveID")
        if not isinstance(cve, str) or not _CVE_RE.match(cve):
            raise FeedError(f"{here}: cveID {cve!r} is not a CVE id")
        fields = {}
        for key in ("vendorProject", "product", "vulnerabilityName", "dateAdded"):
            value = raw.get(key)
            if not isinstance(value, str):
                raise FeedError(f"{here} ({cve}): {key} must be a string")
            fields[key] = value
        due = raw.get("dueDate")
        ransomware = raw.get("knownRansomwareCampaignUse", "Unknown")
        entries.append(
            KevEntry(
                cve_id=cve,
                vendor_project=fields["vendorProject"],
                product=fields["product"],
                name=fields["vulnerabilityName"],
                date_added=fields["dateAdded"],
                due_date=due if isinstance(due, str) else None,
                ransomware=ransomware if isinstance(ransomware, str) else "Unknown",
            )
        )
    return str(doc["catalogVersion"]), entries
