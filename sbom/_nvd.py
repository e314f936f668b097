"""NVD CVE JSON 2.0 records (feeds and API pages) to :class:`Advisory` objects.

Only ``cpeMatch`` entries marked ``vulnerable`` become :class:`CpeRange`
entries. An ``AND`` configuration ("openssl before 1.1.1n *running on* some
OS") is reduced to its vulnerable parts: pumpguard reports the vulnerable
component whatever platform it runs on, which errs towards a finding a reviewer
dismisses with VEX rather than a vulnerability nobody sees.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from sbom import _cvss
from sbom._cpe import parse_cpe
from sbom.advisory import Advisory, CpeRange
from sbom.errors import FeedError

__all__ = ["is_nvd_feed", "parse_nvd_feed"]

# CVSS metrics, newest first. The highest base score of all of them is taken;
# on a tie, the newer version, then NVD's own ("Primary") entry.
_METRICS = ("cvssMetricV40", "cvssMetricV31", "cvssMetricV30", "cvssMetricV2")
_BOUNDS = (
    ("versionStartIncluding", "start_including"),
    ("versionStartExcluding", "start_excluding"),
    ("versionEndIncluding", "end_including"),
    ("versionEndExcluding", "end_excluding"),
)


def is_nvd_feed(doc: object) -> TypeGuard[dict[str, Any]]:
    """Whether a JSON value looks like an NVD CVE JSON 2.0 feed or API page."""
    if not isinstance(doc, dict) or not isinstance(doc.get("vulnerabilities"), list):
        return False
    return doc.get("format") == "NVD_CVE" or any(
        isinstance(v, dict) and "cve" in v for v in doc["vulnerabilities"][:1]
    )


def parse_nvd_feed(doc: object, where: str) -> tuple[str | None, list[Advisory], list[str]]:
    """Parse an NVD CVE JSON 2.0 feed.

    Args:
        doc: The parsed JSON (``{"format": "NVD_CVE", "version": "2.0",
            "vulnerabilities": [{"cve": {...}}, ...]}``).
        where: The file name, for error messages.

    Returns:
        The feed's timestamp (or ``None``), one advisory per CVE, and the ids
        of the rejected CVEs (``vulnStatus`` ``Rejected``), which are not
        advisories: the importer removes them from the store (a CVE rejected
        after an earlier import, as the ``modified`` feed reports it).

    Raises:
        FeedError: ``doc`` is not such a feed or a record is malformed; the
            message names the CVE and the field.
    """
    if not is_nvd_feed(doc):
        raise FeedError(f"{where}: not an NVD CVE JSON 2.0 feed (needs 'vulnerabilities')")
    version = doc.get("version")
    if version is not None and version != "2.0":
        raise FeedError(f"{where}: NVD feed version {version!r}, pumpguard reads '2.0'")
    advisories: list[Advisory] = []
    rejected: list[str] = []
    for i, item in enumerate(doc["vulnerabilities"]):
        if not isinstance(item, dict) or not isinstance(item.get("cve"), dict):
            raise FeedError(f"{where}: vulnerabilities[{i}] must be an object with 'cve'")
        cve = item["cve"]
        advisory = _parse_cve(cve, f"{where}: vulnerabilities[{i}]")
        if advisory is not None:
            advisories.append(advisory)
        else:
            rejected.append(cve["id"])
    timestamp = doc.get("timestamp")
    return (timestamp if isinstance(timestamp, str) else None), advisories, rejected


def _parse_cve(cve: dict[str, Any], where: str) -> Advisory | None:
    cve_id = cve.get("id")
    if not isinstance(cve_id, str) or not cve_id.startswith("CVE-"):
        raise FeedError(f"{where}: id {cve_id!r} is not a CVE id")
    where = f"{where} ({cve_id})"
    if cve.get("vulnStatus") == "Rejected":
        return None
    score, vector = _metrics(cve.get("metrics", {}), where)
    return Advisory(
        source="nvd",
        id=cve_id,
        summary=_description(cve.get("descriptions", []), where),
        published=cve.get("published") if isinstance(cve.get("published"), str) else None,
        modified=cve.get("lastModified") if isinstance(cve.get("lastModified"), str) else None,
        cvss_score=score,
        cvss_vector=vector,
        severity=_cvss.rating(score),
        cpes=tuple(_cpe_ranges(cve.get("configurations", []), where)),
    )


def _description(descriptions: object, where: str) -> str:
    if not isinstance(descriptions, list):
        raise FeedError(f"{where}: descriptions must be an array")
    for entry in descriptions:
        if isinstance(entry, dict) and entry.get("lang") == "en":
            value = entry.get("value")
            if isinstance(value, str):
                return value.strip()
    return ""


def _metrics(metrics: object, where: str) -> tuple[float | None, str | None]:
    """The highest CVSS base score of every metric (any version, any source).

    On a tie the newer CVSS version wins, then NVD's own (``Primary``) entry;
    the vector returned is the one of the chosen entry.
    """
    if not isinstance(metrics, dict):
        raise FeedError(f"{where}: metrics must be an object")
    best: tuple[float, int, bool, str | None] | None = None
    for rank, key in enumerate(reversed(_METRICS)):
        entries = metrics.get(key)
        if not entries:
            continue
        if not isinstance(entries, list):
            raise FeedError(f"{where}: metrics.{key} must be an array")
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            data = entry.get("cvssData")
            if not isinstance(data, dict):
                raise FeedError(f"{where}: metrics.{key}[].cvssData must be an object")
            score = data.get("baseScore")
            vector = data.get("vectorString")
            if isinstance(score, bool) or not isinstance(score, int | float):
                raise FeedError(f"{where}: metrics.{key}[].cvssData.baseScore must be a number")
            if not 0 <= score <= 10:
                raise FeedError(f"{where}: metrics.{key}[].cvssData.baseScore is out of range")
            candidate = (
                float(score),
                rank,
                entry.get("type") == "Primary",
                vector if isinstance(vector, str) else None,
            )
            if best is None or candidate[:3] > best[:3]:
                best = candidate
    if best is None:
        return None, None
    return best[0], best[3]


def _cpe_ranges(configurations: object, where: str) -> list[CpeRange]:
    if not isinstance(configurations, list):
        raise FeedError(f"{where}: configurations must be an array")
    result: list[CpeRange] = []
    for i, config in enumerate(configurations):
        nodes = config.get("nodes") if isinstance(config, dict) else None
        if not isinstance(nodes, list):
            raise FeedError(f"{where}: configurations[{i}].nodes must be an array")
        for j, node in enumerate(nodes):
            matches = node.get("cpeMatch") if isinstance(node, dict) else None
            if not isinstance(matches, list):
                raise FeedError(
                    f"{where}: configurations[{i}].nodes[{j}].cpeMatch must be an array"
                )
            if node.get("negate") is True:
                continue  # "not running on ..." never names a vulnerable product
            for k, match in enumerate(matches):
                here = f"{where}: configurations[{i}].nodes[{j}].cpeMatch[{k}]"
                cpe_range = _cpe_range(match, here)
                if cpe_range is not None:
                    result.append(cpe_range)
    return result


def _cpe_range(match: object, where: str) -> CpeRange | None:
    if not isinstance(match, dict):
        raise FeedError(f"{where} must be an object")
    if match.get("vulnerable") is not True:
        return None
    criteria = match.get("criteria")
    cpe = parse_cpe(criteria) if isinstance(criteria, str) else None
    if cpe is None:
        raise FeedError(f"{where}: criteria {criteria!r} is not a CPE 2.3 name")
    bounds: dict[str, str] = {}
    for json_key, field in _BOUNDS:
        value = match.get(json_key)
        if value is not None:
            if not isinstance(value, str) or not value:
                raise FeedError(f"{where}: {json_key} must be a non-empty string")
            bounds[field] = value
    return CpeRange(
        part=cpe.part,
        vendor=cpe.vendor,
        product=cpe.product,
        version=cpe.version,
        update=cpe.update,
        **bounds,
    )
