"""The offline vulnerability store: one SQLite file.

It holds advisories (OSV records and NVD CVEs), the CISA KEV catalog, the
record of every import (source, file, sha256 of what was read, counts, time)
and the append-only history of VEX analyses.

Lookups are by index only: affected packages by ``(ecosystem, name)``, affected
CPEs by ``(product, vendor)``, KEV entries and analyses by id. An audit of an
SBOM therefore costs a few queries per component whatever the number of
advisories in the store (bench/sbom_audit.py measures it).

Every import is one transaction: a feed that turns out to be bad half-way
leaves the store exactly as it was. A feed's withdrawn OSV records and rejected
CVEs are deleted from the store in that transaction.

The schema is versioned (``PRAGMA user_version``); a store of an earlier schema
is upgraded when opened for writing, or refused with what to do.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sbom import _cvss
from sbom._purl import package_key
from sbom.advisory import Advisory, CpeRange, KevEntry, OsvRange, PackageRange
from sbom.errors import VulnDbError
from sbom.feeds import Feed
from sbom.vex import Analysis, utc_timestamp

__all__ = ["ImportRecord", "VulnDb"]

logger = logging.getLogger(__name__)

_APPLICATION_ID = 0x50475644  # "PGVD": marks the file as a pumpguard store
_SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE imports (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,            -- osv | nvd | kev
    name TEXT NOT NULL,              -- the file or folder as given
    sha256 TEXT NOT NULL,            -- of what was read
    advisories INTEGER NOT NULL,
    kev_entries INTEGER NOT NULL,
    feed_version TEXT,
    imported_at TEXT NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0  -- withdrawn OSV records / rejected CVEs the feed named
);
CREATE TABLE advisories (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    vuln_id TEXT NOT NULL,
    aliases TEXT NOT NULL,           -- JSON array
    summary TEXT NOT NULL,
    published TEXT,
    modified TEXT,
    cvss_score REAL,
    cvss_vector TEXT,
    severity TEXT NOT NULL,
    import_id INTEGER NOT NULL REFERENCES imports(id),
    upstream TEXT NOT NULL DEFAULT '[]', -- JSON array (OSV upstream)
    UNIQUE (source, vuln_id)
);
CREATE TABLE affected_packages (
    advisory INTEGER NOT NULL REFERENCES advisories(id),
    ecosystem TEXT NOT NULL,         -- lookup key (sbom._purl.package_key)
    name TEXT NOT NULL,              -- lookup key
    raw_ecosystem TEXT NOT NULL,     -- as the record writes it; decides version ordering
    raw_name TEXT NOT NULL,
    ranges TEXT NOT NULL,            -- JSON [[type, [[event, version], ...]], ...]
    versions TEXT NOT NULL           -- JSON array
);
CREATE INDEX affected_packages_by_key ON affected_packages (ecosystem, name);
CREATE INDEX affected_packages_by_advisory ON affected_packages (advisory);
CREATE TABLE affected_cpes (
    advisory INTEGER NOT NULL REFERENCES advisories(id),
    part TEXT NOT NULL,
    vendor TEXT NOT NULL,
    product TEXT NOT NULL,
    version TEXT NOT NULL,
    cpe_update TEXT NOT NULL,
    start_including TEXT,
    start_excluding TEXT,
    end_including TEXT,
    end_excluding TEXT
);
CREATE INDEX affected_cpes_by_key ON affected_cpes (product, vendor);
CREATE INDEX affected_cpes_by_advisory ON affected_cpes (advisory);
CREATE TABLE kev (
    cve_id TEXT PRIMARY KEY,
    vendor_project TEXT NOT NULL,
    product TEXT NOT NULL,
    name TEXT NOT NULL,
    date_added TEXT NOT NULL,
    due_date TEXT,
    ransomware TEXT NOT NULL,
    import_id INTEGER NOT NULL REFERENCES imports(id)
);
CREATE TABLE vex_analyses (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    vuln_id TEXT NOT NULL,
    component TEXT NOT NULL,
    hashes TEXT NOT NULL,
    bom_ref TEXT,
    state TEXT NOT NULL,
    justification TEXT,
    responses TEXT NOT NULL,         -- JSON array
    detail TEXT NOT NULL,
    author TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    origin TEXT NOT NULL,            -- "recorded", or "imported from FILE"
    undated INTEGER NOT NULL DEFAULT 0  -- 1: no time in the VEX document; timestamp = import
);
CREATE INDEX vex_by_component ON vex_analyses (component, vuln_id);
-- The history of analyses is evidence: nothing rewrites or removes it.
CREATE TRIGGER vex_analyses_no_update BEFORE UPDATE ON vex_analyses
BEGIN SELECT RAISE(ABORT, 'VEX analyses are append-only'); END;
CREATE TRIGGER vex_analyses_no_delete BEFORE DELETE ON vex_analyses
BEGIN SELECT RAISE(ABORT, 'VEX analyses are append-only'); END;
CREATE TABLE pending_reimports (
    source TEXT PRIMARY KEY,         -- osv | nvd: advisories removed by a schema upgrade
    since TEXT NOT NULL
);
"""

# Schema 1 -> 2. Schema 1 lost what the audit now needs (OSV upstream ids) and
# kept what it must not report (withdrawn OSV records, CVEs rejected after an
# import), so its advisories are removed and their sources must be imported
# again; VEX analyses and the KEV catalog are kept.
_UPGRADE_1_TO_2 = (
    "ALTER TABLE imports ADD COLUMN removed INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE advisories ADD COLUMN upstream TEXT NOT NULL DEFAULT '[]'",
    "ALTER TABLE vex_analyses ADD COLUMN undated INTEGER NOT NULL DEFAULT 0",
    "CREATE TABLE pending_reimports (source TEXT PRIMARY KEY, since TEXT NOT NULL)",
    "INSERT INTO pending_reimports SELECT DISTINCT source, ? FROM advisories",
    "DELETE FROM affected_packages",
    "DELETE FROM affected_cpes",
    "DELETE FROM advisories",
    "DELETE FROM imports WHERE source IN ('osv', 'nvd')",
)

_PACKAGES_QUERY = (
    "SELECT a.source, a.vuln_id, a.aliases, a.summary, a.published, a.modified, "
    "a.cvss_score, a.cvss_vector, a.severity, "
    "p.raw_ecosystem, p.raw_name, p.ranges, p.versions, a.upstream "
    "FROM affected_packages p JOIN advisories a ON a.id = p.advisory "
    "WHERE p.ecosystem = ? AND p.name = ?"
)
_CPES_QUERY = (
    "SELECT a.source, a.vuln_id, a.aliases, a.summary, a.published, a.modified, "
    "a.cvss_score, a.cvss_vector, a.severity, "
    "c.part, c.vendor, c.product, c.version, c.cpe_update, "
    "c.start_including, c.start_excluding, c.end_including, c.end_excluding, a.upstream "
    "FROM affected_cpes c JOIN advisories a ON a.id = c.advisory "
    "WHERE c.product = ? AND (? = '*' OR c.vendor IN (?, '*'))"
)
_NVD_QUERY = (
    "SELECT a.source, a.vuln_id, a.aliases, a.summary, a.published, a.modified, "
    "a.cvss_score, a.cvss_vector, a.severity, a.upstream "
    "FROM advisories a WHERE a.source = 'nvd' AND a.vuln_id = ?"
)
_ANALYSES_QUERY = (
    "SELECT seq, vuln_id, component, hashes, state, justification, responses, detail, "
    "author, timestamp, bom_ref, undated FROM vex_analyses"
)
_ANALYSES_OF_COMPONENT_QUERY = (
    "SELECT seq, vuln_id, component, hashes, state, justification, responses, detail, "
    "author, timestamp, bom_ref, undated FROM vex_analyses WHERE component = ?"
)
_STATEMENT_QUERY = (
    "SELECT 1 FROM vex_analyses WHERE component = ? AND vuln_id = ? AND hashes = ? "
    "AND state = ? AND justification IS ? AND responses = ? AND detail = ? "
    "AND author = ? AND undated = 0 AND timestamp = ?"
)
# An undated statement (its document gave no time) is the same whatever its time.
_UNDATED_STATEMENT_QUERY = (
    "SELECT 1 FROM vex_analyses WHERE component = ? AND vuln_id = ? AND hashes = ? "
    "AND state = ? AND justification IS ? AND responses = ? AND detail = ? "
    "AND author = ? AND undated = 1"
)


@dataclasses.dataclass(frozen=True)
class ImportRecord:
    """One import into the store.

    Attributes:
        source: ``osv``, ``nvd`` or ``kev``.
        name: The file or folder as given.
        sha256: sha256 of what was read (see :class:`sbom.feeds.Feed`).
        advisories: Advisories imported (OSV records or CVEs).
        kev_entries: KEV entries imported.
        feed_version: The feed's timestamp or catalog version, if it has one.
        imported_at: When, ISO 8601 UTC.
        removed: Withdrawn OSV records or rejected CVEs the feed named; any
            advisory stored under such an id was deleted by the import.
    """

    source: str
    name: str
    sha256: str
    advisories: int
    kev_entries: int
    feed_version: str | None
    imported_at: str
    removed: int = 0

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object."""
        return dataclasses.asdict(self)


class VulnDb:
    """An open vulnerability store. Use :meth:`open` or :meth:`create`."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self._pending: dict[str, str] = {}

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(cls, path: Path, *, create: bool = False, readonly: bool = False) -> VulnDb:
        """Open a store.

        A store of schema 1 (an earlier pumpguard) opened for writing is
        upgraded: its advisories are removed, because schema 1 did not keep
        what the audit needs, and lookups refuse to answer until their sources
        (OSV, NVD) have been imported again. Its VEX analyses and KEV catalog
        are kept. Opened read-only, such a store is refused with the same advice.

        Args:
            path: The SQLite file.
            create: Create the store if the file does not exist.
            readonly: Open for reading only (audits); the file must exist.

        Raises:
            VulnDbError: The file does not exist (and ``create`` is false), is
                not a pumpguard store, or has a schema this version cannot read.
        """
        exists = path.exists()
        if not exists and not create:
            raise VulnDbError(
                f"no vulnerability store at {path}; create one with 'pumpguard vulndb import'"
            )
        try:
            if readonly:
                connection = sqlite3.connect(
                    f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None
                )
            else:
                connection = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as e:
            raise VulnDbError(f"cannot open {path}: {e}") from e
        store = cls(connection, path)
        try:
            connection.execute("PRAGMA foreign_keys = ON")
            if not exists:
                store._create_schema()
            store._check_schema(upgrade=not readonly)
            store._pending = store._pending_reimports()
        except sqlite3.DatabaseError as e:
            connection.close()
            raise VulnDbError(f"{path} is not a pumpguard vulnerability store: {e}") from e
        except VulnDbError:
            connection.close()
            raise
        return store

    def _create_schema(self) -> None:
        # One statement at a time: executescript() would commit the transaction.
        with self._transaction():
            for statement in _statements(_SCHEMA):
                self._db.execute(statement)
            self._db.execute("PRAGMA application_id = 1346852420")  # _APPLICATION_ID
            self._db.execute("PRAGMA user_version = 2")  # _SCHEMA_VERSION

    def _check_schema(self, *, upgrade: bool) -> None:
        (app_id,) = self._db.execute("PRAGMA application_id").fetchone()
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if app_id != _APPLICATION_ID:
            raise VulnDbError(f"{self.path} is not a pumpguard vulnerability store")
        if version == 1 and upgrade:
            self._upgrade_from_1()
        elif version == 1:
            raise VulnDbError(
                f"{self.path} has store schema 1, written by an earlier pumpguard: its "
                "advisories lack OSV upstream ids and may include withdrawn records and "
                "rejected CVEs. Re-import the feeds to upgrade it: pumpguard vulndb import "
                f"--db {self.path} FEED... (VEX analyses and the KEV catalog are kept)"
            )
        elif version != _SCHEMA_VERSION:
            raise VulnDbError(
                f"{self.path} has store schema {version}; this pumpguard reads {_SCHEMA_VERSION}"
            )

    def _upgrade_from_1(self) -> None:
        with self._transaction():
            for statement in _UPGRADE_1_TO_2:
                params = (utc_timestamp(),) if "?" in statement else ()
                self._db.execute(statement, params)
            self._db.execute("PRAGMA user_version = 2")  # _SCHEMA_VERSION
        logger.warning(
            "%s: upgraded from store schema 1; its OSV and NVD advisories were removed, "
            "re-import the feeds",
            self.path,
        )

    def _pending_reimports(self) -> dict[str, str]:
        rows = self._db.execute("SELECT source, since FROM pending_reimports").fetchall()
        return dict(rows)

    def pending_reimports(self) -> dict[str, str]:
        """Sources whose advisories a schema upgrade removed, and since when.

        Until each is imported again, lookups raise :class:`VulnDbError`
        rather than answer from an incomplete store.
        """
        return dict(self._pending)

    def _require_current(self) -> None:
        if self._pending:
            sources = " and ".join(sorted(s.upper() for s in self._pending))
            raise VulnDbError(
                f"{self.path}: its {sources} advisories were removed when the store was "
                "upgraded from schema 1; re-import them (pumpguard vulndb import "
                f"--db {self.path} FEED...) before auditing"
            )

    def close(self) -> None:
        """Close the store."""
        self._db.close()

    def __enter__(self) -> VulnDb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    # --------------------------------------------------------------- imports
    def import_feed(
        self,
        feed: Feed,
        *,
        progress: Callable[[int], None] | None = None,
        now: datetime.datetime | None = None,
    ) -> ImportRecord:
        """Import a parsed feed in one transaction.

        An advisory already in the store from the same source (same id) is
        replaced by the feed's; KEV entries likewise. An advisory stored under
        an id the feed names as withdrawn (OSV) or rejected (NVD) is deleted,
        with its affected entries.

        Args:
            feed: What :func:`sbom.feeds.read_feed` returned.
            progress: Called with the number of records written since the last call.
            now: Time to record; default now.

        Returns:
            The record of the import, also stored.
        """
        tick = progress or (lambda n: None)
        record = ImportRecord(
            source=feed.kind,
            name=feed.name,
            sha256=feed.sha256,
            advisories=len(feed.advisories),
            kev_entries=len(feed.kev),
            feed_version=feed.feed_version,
            imported_at=utc_timestamp(now),
            removed=len(feed.removed),
        )
        try:
            with self._transaction():
                cursor = self._db.execute(
                    "INSERT INTO imports (source, name, sha256, advisories, kev_entries, "
                    "feed_version, imported_at, removed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.source,
                        record.name,
                        record.sha256,
                        record.advisories,
                        record.kev_entries,
                        record.feed_version,
                        record.imported_at,
                        record.removed,
                    ),
                )
                import_id = cursor.lastrowid
                for i, advisory in enumerate(feed.advisories, start=1):
                    self._put_advisory(advisory, import_id)
                    if i % 1000 == 0:
                        tick(1000)
                tick(len(feed.advisories) % 1000)
                for vuln_id in feed.removed:
                    self._delete_advisory(feed.kind, vuln_id)
                self._db.executemany(
                    "INSERT OR REPLACE INTO kev VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        (
                            k.cve_id,
                            k.vendor_project,
                            k.product,
                            k.name,
                            k.date_added,
                            k.due_date,
                            k.ransomware,
                            import_id,
                        )
                        for k in feed.kev
                    ),
                )
                tick(len(feed.kev))
                if feed.kind in ("osv", "nvd"):
                    self._db.execute("DELETE FROM pending_reimports WHERE source = ?", (feed.kind,))
        except sqlite3.Error as e:
            raise VulnDbError(f"cannot import {feed.name} into {self.path}: {e}") from e
        logger.info(
            "imported %s feed %s (sha256 %s): %d advisories, %d KEV entries",
            feed.kind,
            feed.name,
            feed.sha256,
            record.advisories,
            record.kev_entries,
        )
        self._pending = self._pending_reimports()
        return record

    def _delete_advisory(self, source: str, vuln_id: str) -> None:
        row = self._db.execute(
            "SELECT id FROM advisories WHERE source = ? AND vuln_id = ?", (source, vuln_id)
        ).fetchone()
        if row is None:
            return
        self._db.execute("DELETE FROM affected_packages WHERE advisory = ?", row)
        self._db.execute("DELETE FROM affected_cpes WHERE advisory = ?", row)
        self._db.execute("DELETE FROM advisories WHERE id = ?", row)
        logger.info("removed %s advisory %s: withdrawn or rejected", source, vuln_id)

    def _put_advisory(self, advisory: Advisory, import_id: int | None) -> None:
        (row_id,) = self._db.execute(
            "INSERT INTO advisories (source, vuln_id, aliases, summary, published, modified, "
            "cvss_score, cvss_vector, severity, import_id, upstream) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (source, vuln_id) DO UPDATE SET aliases = excluded.aliases, "
            "upstream = excluded.upstream, "
            "summary = excluded.summary, published = excluded.published, "
            "modified = excluded.modified, cvss_score = excluded.cvss_score, "
            "cvss_vector = excluded.cvss_vector, severity = excluded.severity, "
            "import_id = excluded.import_id RETURNING id",
            (
                advisory.source,
                advisory.id,
                json.dumps(list(advisory.aliases)),
                advisory.summary,
                advisory.published,
                advisory.modified,
                advisory.cvss_score,
                advisory.cvss_vector,
                advisory.severity,
                import_id,
                json.dumps(list(advisory.upstream)),
            ),
        ).fetchone()
        # A replaced advisory's affected entries go with it.
        self._db.execute("DELETE FROM affected_packages WHERE advisory = ?", (row_id,))
        self._db.execute("DELETE FROM affected_cpes WHERE advisory = ?", (row_id,))
        if advisory.packages:
            self._db.executemany(
                "INSERT INTO affected_packages VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        row_id,
                        *package_key(p.ecosystem, p.name),
                        p.ecosystem,
                        p.name,
                        json.dumps([[r.type, [list(e) for e in r.events]] for r in p.ranges]),
                        json.dumps(list(p.versions)),
                    )
                    for p in advisory.packages
                ),
            )
        if advisory.cpes:
            self._db.executemany(
                "INSERT INTO affected_cpes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        row_id,
                        c.part,
                        c.vendor,
                        c.product,
                        c.version,
                        c.update,
                        c.start_including,
                        c.start_excluding,
                        c.end_including,
                        c.end_excluding,
                    )
                    for c in advisory.cpes
                ),
            )

    def imports(self) -> list[ImportRecord]:
        """Every import, oldest first."""
        rows = self._db.execute(
            "SELECT source, name, sha256, advisories, kev_entries, feed_version, imported_at, "
            "removed FROM imports ORDER BY id"
        ).fetchall()
        return [ImportRecord(*row) for row in rows]

    def counts(self) -> dict[str, int]:
        """How many advisories (per source), KEV entries and analyses the store holds."""
        result = {"osv": 0, "nvd": 0}
        for source, count in self._db.execute(
            "SELECT source, COUNT(*) FROM advisories GROUP BY source"
        ):
            result[source] = count
        result["kev"] = self._db.execute("SELECT COUNT(*) FROM kev").fetchone()[0]
        result["vex_analyses"] = self._db.execute("SELECT COUNT(*) FROM vex_analyses").fetchone()[0]
        return result

    # --------------------------------------------------------------- lookups
    def packages(self, ecosystem: str, name: str) -> list[tuple[Advisory, PackageRange]]:
        """Advisories affecting a package, by its ``sbom._purl.package_key``."""
        self._require_current()
        rows = self._db.execute(_PACKAGES_QUERY, (ecosystem, name)).fetchall()
        return [(_advisory(row[:9], row[13]), _package_range(row[9:13])) for row in rows]

    def cpes(self, vendor: str, product: str) -> list[tuple[Advisory, CpeRange]]:
        """Advisories affecting a CPE product; ``vendor`` ``*`` means any vendor."""
        self._require_current()
        rows = self._db.execute(_CPES_QUERY, (product, vendor, vendor)).fetchall()
        return [(_advisory(row[:9], row[18]), CpeRange(*row[9:18])) for row in rows]

    def nvd(self, cve_ids: Iterable[str]) -> dict[str, Advisory]:
        """The NVD records of those of ``cve_ids`` the store holds (without their CPEs)."""
        self._require_current()
        result: dict[str, Advisory] = {}
        for cve_id in set(cve_ids):
            row = self._db.execute(_NVD_QUERY, (cve_id,)).fetchone()
            if row is not None:
                result[cve_id] = _advisory(row[:9], row[9])
        return result

    def kev(self, cve_ids: Iterable[str]) -> dict[str, KevEntry]:
        """The KEV entries of those of ``cve_ids`` that are in the catalog."""
        result: dict[str, KevEntry] = {}
        for cve_id in set(cve_ids):
            row = self._db.execute(
                "SELECT cve_id, vendor_project, product, name, date_added, due_date, ransomware "
                "FROM kev WHERE cve_id = ?",
                (cve_id,),
            ).fetchone()
            if row is not None:
                result[cve_id] = KevEntry(*row)
        return result

    # ------------------------------------------------------------------- VEX
    def record_analyses(self, analyses: Sequence[Analysis], origin: str = "recorded") -> int:
        """Append analyses to the history, in one transaction.

        A statement identical to one already recorded (same subject, state,
        justification, responses, detail, author and timestamp) is not
        recorded twice, so importing the same VEX document again is harmless.
        A statement whose document gave no time (:attr:`Analysis.undated`)
        carries the time of its first import; it is the same statement as an
        undated one already recorded with the same fields, whatever its time.

        Returns:
            How many statements were added.
        """
        added = 0
        recorded_at = utc_timestamp()
        try:
            with self._transaction():
                for a in analyses:
                    if self._has_statement(a):
                        continue
                    self._db.execute(
                        "INSERT INTO vex_analyses (vuln_id, component, hashes, bom_ref, state, "
                        "justification, responses, detail, author, timestamp, recorded_at, origin, "
                        "undated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            a.vuln_id,
                            a.component,
                            a.hashes,
                            a.bom_ref,
                            a.state,
                            a.justification,
                            json.dumps(list(a.responses)),
                            a.detail,
                            a.author,
                            a.timestamp,
                            recorded_at,
                            origin,
                            int(a.undated),
                        ),
                    )
                    added += 1
        except sqlite3.Error as e:
            raise VulnDbError(f"cannot record analyses in {self.path}: {e}") from e
        return added

    def _has_statement(self, a: Analysis) -> bool:
        params: list[Any] = [
            a.component,
            a.vuln_id,
            a.hashes,
            a.state,
            a.justification,
            json.dumps(list(a.responses)),
            a.detail,
            a.author,
        ]
        if a.undated:
            query = _UNDATED_STATEMENT_QUERY
        else:
            query = _STATEMENT_QUERY
            params.append(a.timestamp)
        row = self._db.execute(query, params).fetchone()
        return row is not None

    def analyses(self, components: Iterable[str] | None = None) -> list[Analysis]:
        """Recorded statements, oldest first.

        Args:
            components: Only those about these component identities; default all.
        """
        rows: list[Any] = []
        if components is None:
            rows = self._db.execute(_ANALYSES_QUERY).fetchall()
        else:
            for component in set(components):
                rows += self._db.execute(
                    _ANALYSES_OF_COMPONENT_QUERY,
                    (component,),
                ).fetchall()
        return [_analysis(row[1:]) for row in sorted(rows, key=lambda row: row[0])]


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on any exception."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")


def _statements(script: str) -> Iterator[str]:
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""


def _advisory(row: Sequence[Any], upstream: str = "[]") -> Advisory:
    source, vuln_id, aliases, summary, published, modified, score, vector, severity = row
    if score is None and vector:
        # A store imported before CVSS 4.0 vectors were scored holds them unscored.
        score = _cvss.base_score(vector)
        severity = _cvss.rating(score) if score is not None else severity
    return Advisory(
        source=source,
        id=vuln_id,
        aliases=tuple(json.loads(aliases)),
        upstream=tuple(json.loads(upstream)),
        summary=summary,
        published=published,
        modified=modified,
        cvss_score=score,
        cvss_vector=vector,
        severity=severity,
    )


def _package_range(row: Sequence[Any]) -> PackageRange:
    ecosystem, name, ranges, versions = row
    return PackageRange(
        ecosystem=ecosystem,
        name=name,
        ranges=tuple(
            OsvRange(type=kind, events=tuple((e[0], e[1]) for e in events))
            for kind, events in json.loads(ranges)
        ),
        versions=tuple(json.loads(versions)),
    )


def _analysis(row: Sequence[Any]) -> Analysis:
    vuln_id, component, hashes, state, justification, responses, detail, author, ts, ref = row[:10]
    return Analysis(
        vuln_id=vuln_id,
        component=component,
        hashes=hashes,
        state=state,
        justification=justification,
        responses=tuple(json.loads(responses)),
        detail=detail,
        author=author,
        timestamp=ts,
        bom_ref=ref,
        undated=bool(row[10]),
    )
