"""OSV records (https://ossf.github.io/osv-schema/) to :class:`Advisory` objects."""

from __future__ import annotations

from typing import Any, TypeGuard

from sbom import _cvss
from sbom.advisory import Advisory, OsvRange, PackageRange
from sbom.errors import FeedError

__all__ = ["is_osv_record", "parse_osv"]

_EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")
_RANGE_TYPES = ("SEMVER", "ECOSYSTEM", "GIT")
_SEVERITY_WORDS = {"CRITICAL", "HIGH", "MODERATE", "MEDIUM", "LOW"}


def is_osv_record(doc: object) -> TypeGuard[dict[str, Any]]:
    """Whether a JSON value looks like one OSV record (an id and a modified time)."""
    return isinstance(doc, dict) and isinstance(doc.get("id"), str) and "modified" in doc


def _str(value: object, where: str, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise FeedError(f"{where}: {field} must be a non-empty string")
    return value


def _list(doc: dict[str, Any], key: str, where: str) -> list[Any]:
    value = doc.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise FeedError(f"{where}: {key} must be an array")
    return value


def parse_osv(doc: object, where: str) -> Advisory:
    """Parse one OSV record.

    Args:
        doc: The parsed JSON of the record.
        where: The file (and zip member) it came from, for error messages.

    Returns:
        The advisory. ``GIT`` ranges are kept but never match a version (they
        need the repository's history); OSV lists the versions they cover in
        ``versions``, which do match. ``upstream`` (the ids a Debian or Ubuntu
        record is derived from, its CVE) is kept beside ``aliases``. A record
        with ``withdrawn`` set comes back with :attr:`Advisory.withdrawn`: the
        importer removes it instead of storing it.

    Raises:
        FeedError: ``doc`` is not an OSV record; the message names the field.
    """
    if not is_osv_record(doc):
        raise FeedError(f"{where}: not an OSV record (needs string 'id' and 'modified')")
    record_id = _str(doc["id"], where, "id")
    where = f"{where}: {record_id}"
    aliases = tuple(_str(a, where, "aliases[]") for a in _list(doc, "aliases", where))
    upstream = tuple(_str(u, where, "upstream[]") for u in _list(doc, "upstream", where))
    withdrawn = doc.get("withdrawn")
    if withdrawn is not None:
        withdrawn = _str(withdrawn, where, "withdrawn")
    packages = tuple(
        _parse_affected(entry, f"{where}: affected[{i}]")
        for i, entry in enumerate(_list(doc, "affected", where))
    )
    score, vector = _severity(doc, where)
    summary = doc.get("summary") or doc.get("details") or ""
    if not isinstance(summary, str):
        raise FeedError(f"{where}: summary must be a string")
    return Advisory(
        source="osv",
        id=record_id,
        aliases=aliases,
        upstream=tuple(u for u in dict.fromkeys(upstream) if u != record_id and u not in aliases),
        summary=summary.strip().splitlines()[0] if summary.strip() else "",
        published=doc.get("published") if isinstance(doc.get("published"), str) else None,
        modified=doc.get("modified") if isinstance(doc.get("modified"), str) else None,
        cvss_score=score,
        cvss_vector=vector,
        severity=_severity_label(doc, score),
        packages=tuple(p for p in packages if p is not None),
        withdrawn=withdrawn,
    )


def _parse_affected(entry: object, where: str) -> PackageRange | None:
    if not isinstance(entry, dict):
        raise FeedError(f"{where}: must be an object")
    package = entry.get("package")
    if package is None:
        return None  # OSV allows affected entries about repositories only
    if not isinstance(package, dict):
        raise FeedError(f"{where}: package must be an object")
    ecosystem = _str(package.get("ecosystem"), where, "package.ecosystem")
    name = _str(package.get("name"), where, "package.name")
    ranges: list[OsvRange] = []
    for i, raw in enumerate(_list(entry, "ranges", where)):
        if not isinstance(raw, dict):
            raise FeedError(f"{where}: ranges[{i}] must be an object")
        kind = raw.get("type")
        if kind not in _RANGE_TYPES:
            raise FeedError(f"{where}: ranges[{i}].type {kind!r} is not one of {_RANGE_TYPES}")
        events: list[tuple[str, str]] = []
        for j, event in enumerate(_list(raw, "events", where)):
            if not isinstance(event, dict) or len(event) != 1:
                raise FeedError(f"{where}: ranges[{i}].events[{j}] must have exactly one key")
            ((event_kind, version),) = event.items()
            if event_kind not in _EVENT_KINDS:
                raise FeedError(f"{where}: ranges[{i}].events[{j}]: unknown event {event_kind!r}")
            events.append((event_kind, _str(version, where, f"ranges[{i}].events[{j}]")))
        ranges.append(OsvRange(type=kind, events=tuple(events)))
    versions = tuple(_str(v, where, "versions[]") for v in _list(entry, "versions", where))
    return PackageRange(ecosystem=ecosystem, name=name, ranges=tuple(ranges), versions=versions)


# OSV severity types pumpguard scores, oldest first: on equal scores the newer wins.
_SCORED_TYPES = ("CVSS_V3", "CVSS_V4")


def _severity(doc: dict[str, Any], where: str) -> tuple[float | None, str | None]:
    """The highest CVSS 3.x or 4.0 score of the record, else any vector without a score.

    On equal scores the newer CVSS version's vector is kept, as for NVD records.
    """
    best: tuple[float, int, str] | None = None
    unscored: str | None = None
    for i, entry in enumerate(_list(doc, "severity", where)):
        if not isinstance(entry, dict) or not isinstance(entry.get("score"), str):
            raise FeedError(f"{where}: severity[{i}] must have a string 'score'")
        vector: str = entry["score"]
        kind = entry.get("type")
        score = _cvss.base_score(vector) if kind in _SCORED_TYPES else None
        if score is None:
            unscored = unscored or vector
            continue
        candidate = (score, _SCORED_TYPES.index(str(kind)), vector)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    if best is None:
        return None, unscored
    return best[0], best[2]


def _severity_label(doc: dict[str, Any], score: float | None) -> str:
    if score is not None:
        return _cvss.rating(score)
    # GitHub advisories carry a qualitative severity when there is no vector.
    specific = doc.get("database_specific")
    if isinstance(specific, dict):
        word = specific.get("severity")
        if isinstance(word, str) and word.upper() in _SEVERITY_WORDS:
            return "medium" if word.upper() == "MODERATE" else word.lower()
    return "unknown"
