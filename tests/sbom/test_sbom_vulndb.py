"""The offline vulnerability store: importing OSV, NVD and KEV feeds."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import sqlite3
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from repo_support import CliResult
from sbom.advisory import Advisory, CpeRange
from sbom.errors import FeedError, VulnDbError
from sbom.feeds import read_feed
from sbom.vex import Analysis
from sbom.vulndb import VulnDb

FIXTURES = Path(__file__).parent / "fixtures"


def _osv_zip(path: Path, records: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in records.items():
            archive.writestr(name, data)
    return path


def _osv_records() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((FIXTURES / "osv").glob("*.json"))}


def test_import_records_source_file_digest_and_counts(tmp_path: Path) -> None:
    nvd = FIXTURES / "nvdcve-2.0-sample.json"
    with VulnDb.open(tmp_path / "db.sqlite", create=True) as db:
        record = db.import_feed(read_feed(nvd))
        imports = db.imports()
        counts = db.counts()

    assert imports == [record]
    assert record.source == "nvd"
    assert record.name == str(nvd)
    assert record.sha256 == hashlib.sha256(nvd.read_bytes()).hexdigest()
    assert record.advisories == 4
    assert record.feed_version == "2024-06-01T03:00:00.000"
    assert counts == {"osv": 0, "nvd": 4, "kev": 0, "vex_analyses": 0}


def test_osv_folder_digest_covers_names_and_contents(tmp_path: Path) -> None:
    folder = tmp_path / "osv"
    folder.mkdir()
    for name, data in _osv_records().items():
        (folder / name).write_bytes(data)
    first = read_feed(folder)
    (folder / "DSA-5111-1.json").write_bytes(
        (FIXTURES / "osv" / "DSA-5111-1.json").read_bytes().replace(b"2022-04-07", b"2022-04-08")
    )
    second = read_feed(folder)

    assert first.kind == "osv"
    assert len(first.advisories) == 3
    assert first.sha256 != second.sha256


def test_osv_all_zip_is_read_in_memory(tmp_path: Path) -> None:
    archive = _osv_zip(tmp_path / "all.zip", _osv_records())
    feed = read_feed(archive)

    assert sorted(a.id for a in feed.advisories) == [
        "DSA-5111-1",
        "GHSA-qppj-fm5r-hxr3",
        "GHSA-v845-jxx5-vc9f",
    ]
    assert feed.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_zip_member_names_are_never_used_as_paths(tmp_path: Path) -> None:
    records = {"../../escape.json": (FIXTURES / "osv" / "DSA-5111-1.json").read_bytes()}
    feed = read_feed(_osv_zip(tmp_path / "all.zip", records))

    assert [a.id for a in feed.advisories] == ["DSA-5111-1"]
    assert not (tmp_path.parent / "escape.json").exists()


def test_gzipped_nvd_feed_is_read(tmp_path: Path) -> None:
    path = tmp_path / "nvdcve-2.0-2022.json.gz"
    path.write_bytes(gzip.compress((FIXTURES / "nvdcve-2.0-sample.json").read_bytes()))
    feed = read_feed(path)

    assert feed.kind == "nvd"
    assert {a.id for a in feed.advisories} >= {"CVE-2018-25032", "CVE-2022-0778"}


def test_kev_catalog_is_read() -> None:
    feed = read_feed(FIXTURES / "known_exploited_vulnerabilities.json")

    assert feed.kind == "kev"
    assert feed.feed_version == "2024.06.03"
    assert {k.cve_id for k in feed.kev} == {"CVE-2021-44228", "CVE-2023-44487"}


def _corrupt_zip(tmp_path: Path) -> Path:
    good = _osv_zip(tmp_path / "good.zip", _osv_records()).read_bytes()
    path = tmp_path / "all.zip"
    path.write_bytes(good[: len(good) // 2])
    return path


def _flipped_zip(tmp_path: Path) -> Path:
    # A bit flipped inside a compressed member: the CRC check must catch it.
    data = bytearray(_osv_zip(tmp_path / "good.zip", _osv_records()).read_bytes())
    data[60] ^= 0xFF
    path = tmp_path / "all.zip"
    path.write_bytes(bytes(data))
    return path


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_corrupt_zip, "corrupt zip archive"),
        (_flipped_zip, "all.zip"),
        (lambda t: _write(t, "feed.json", b'{"vulnerabilities": [}'), "malformed JSON"),
        (lambda t: _write(t, "feed.json", b'{"id": "X", "id": "Y"}'), "duplicate key"),
        (lambda t: _write(t, "feed.json", b'{"hello": "world"}'), "not an OSV record, an NVD"),
        (lambda t: _write(t, "feed.json.gz", b"\x1f\x8b\x08\x00garbage"), "corrupt gzip"),
        (
            lambda t: _write(
                t,
                "nvd.json",
                json.dumps({"format": "NVD_CVE", "version": "1.1", "vulnerabilities": []}).encode(),
            ),
            "NVD feed version '1.1'",
        ),
        (
            lambda t: _write(
                t,
                "osv.json",
                json.dumps(
                    {
                        "id": "OSV-1",
                        "modified": "2024-01-01T00:00:00Z",
                        "affected": [
                            {
                                "package": {"ecosystem": "PyPI", "name": "x"},
                                "ranges": [{"type": "WEIRD", "events": []}],
                            }
                        ],
                    }
                ).encode(),
            ),
            "OSV-1: affected[0]: ranges[0].type 'WEIRD'",
        ),
        (
            lambda t: _write(
                t,
                "nvd.json",
                json.dumps(
                    {
                        "format": "NVD_CVE",
                        "version": "2.0",
                        "vulnerabilities": [
                            {
                                "cve": {
                                    "id": "CVE-2024-0001",
                                    "configurations": [
                                        {
                                            "nodes": [
                                                {
                                                    "cpeMatch": [
                                                        {
                                                            "vulnerable": True,
                                                            "criteria": "not-a-cpe",
                                                        }
                                                    ]
                                                }
                                            ]
                                        }
                                    ],
                                }
                            }
                        ],
                    }
                ).encode(),
            ),
            "CVE-2024-0001",
        ),
    ],
)
def test_bad_feeds_are_refused_with_a_clear_error(
    tmp_path: Path, make: object, message: str
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(FeedError) as info:
        read_feed(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_a_feed_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(FeedError, match="not the CISA KEV catalog"):
        read_feed(FIXTURES / "nvdcve-2.0-sample.json", kind="kev")


def test_failed_import_leaves_the_store_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with VulnDb.open(path, create=True) as db:
        db.import_feed(read_feed(FIXTURES / "nvdcve-2.0-sample.json"))
        before = (db.imports(), db.counts())
        feed = read_feed(FIXTURES / "osv")
        # The last advisory breaks a NOT NULL constraint after the others are written.
        bad = Advisory(source="osv", id="BAD-1", cpes=(CpeRange(None, "v", "p", "*"),))  # type: ignore[arg-type]
        broken = dataclasses.replace(feed, advisories=(*feed.advisories, bad))
        with pytest.raises(VulnDbError, match="cannot import"):
            db.import_feed(broken)
        assert (db.imports(), db.counts()) == before
        assert db.packages("debian", "zlib") == []


def test_reimporting_an_advisory_replaces_it(tmp_path: Path) -> None:
    with VulnDb.open(tmp_path / "db.sqlite", create=True) as db:
        db.import_feed(read_feed(FIXTURES / "osv"))
        db.import_feed(read_feed(FIXTURES / "osv"))
        assert db.counts()["osv"] == 3
        assert len(db.packages("debian", "zlib")) == 1
        assert len(db.imports()) == 2


def test_lookups_use_the_indexes(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    VulnDb.open(path, create=True).close()
    connection = sqlite3.connect(path)
    from sbom.vulndb import _CPES_QUERY, _PACKAGES_QUERY

    plans = [
        " ".join(row[-1] for row in connection.execute(f"EXPLAIN QUERY PLAN {q}", args))
        for q, args in ((_PACKAGES_QUERY, ("pypi", "x")), (_CPES_QUERY, ("p", "v", "v")))
    ]
    assert "USING INDEX affected_packages_by_key" in plans[0]
    assert "USING INDEX affected_cpes_by_key" in plans[1]


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(VulnDbError, match="not a pumpguard vulnerability store"):
        VulnDb.open(path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(VulnDbError, match="not a pumpguard vulnerability store"):
        VulnDb.open(junk)


def test_a_missing_store_is_not_created_by_readers(tmp_path: Path) -> None:
    path = tmp_path / "missing.sqlite"
    with pytest.raises(VulnDbError, match="no vulnerability store"):
        VulnDb.open(path, readonly=True)
    assert not path.exists()


def test_vex_history_is_append_only(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    analysis = Analysis(
        vuln_id="CVE-2018-25032",
        component="pkg:generic/zlib@1.2.11",
        hashes="",
        state="in_triage",
        author="qa",
        timestamp="2025-03-01T12:00:00Z",
    )
    with VulnDb.open(path, create=True) as db:
        assert db.record_analyses([analysis]) == 1
        assert db.record_analyses([analysis]) == 0  # the same statement again
    connection = sqlite3.connect(path)
    for statement in ("UPDATE vex_analyses SET state = 'resolved'", "DELETE FROM vex_analyses"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            connection.execute(statement)


def _schema_1_store(path: Path) -> Path:
    """A store written by the previous pumpguard (store schema 1), from its SQL dump."""
    connection = sqlite3.connect(path)
    connection.executescript((FIXTURES / "vulndb-schema-1.sql").read_text(encoding="utf-8"))
    connection.close()
    return path


def test_schema_1_store_is_refused_for_reading_and_upgraded_on_write(
    tmp_path: Path, run_cli: Callable[..., CliResult], make_sbom: Callable[..., bytes]
) -> None:
    from sbom.audit import audit
    from sbom.model import SbomComponent

    path = _schema_1_store(tmp_path / "old.sqlite")
    # Read-only (an audit): refused, with what to do, rather than answered from
    # advisories that lack upstream ids and may be withdrawn or rejected.
    with pytest.raises(VulnDbError, match=r"schema 1.*Re-import the feeds"):
        VulnDb.open(path, readonly=True)
    manifest = tmp_path / "components.toml"
    manifest.write_text(
        '[[component]]\nname = "zlib"\nversion = "1.2.11"\n'
        'cpe = "cpe:2.3:a:zlib:zlib:1.2.11:*:*:*:*:*:*:*"\n',
        encoding="utf-8",
    )
    sbom = tmp_path / "sbom.cdx.json"
    sbom.write_bytes(make_sbom(components_manifest=manifest))
    refused = run_cli("sbom", "audit", sbom, "--db", path)
    assert refused.code == 1
    assert "Re-import the feeds" in refused.err

    # Written to: upgraded; the VEX history and the KEV catalog are kept, the
    # advisories must be imported again before an audit answers.
    zlib = SbomComponent(
        "component:zlib@1.2.11",
        "library",
        "zlib",
        "1.2.11",
        purl="pkg:generic/zlib@1.2.11",
        cpe="cpe:2.3:a:zlib:zlib:1.2.11:*:*:*:*:*:*:*",
    )
    with VulnDb.open(path, create=True) as db:
        assert db.counts() == {"osv": 0, "nvd": 0, "kev": 2, "vex_analyses": 1}
        assert sorted(db.pending_reimports()) == ["nvd", "osv"]
        assert [r.source for r in db.imports()] == ["kev"]
        with pytest.raises(VulnDbError, match=r"OSV.*re-import them"):
            audit([zlib], db, db.analyses())
        db.import_feed(read_feed(FIXTURES / "osv"))
        with pytest.raises(VulnDbError, match="NVD advisories were removed"):
            audit([zlib], db, db.analyses())
        db.import_feed(read_feed(FIXTURES / "nvdcve-2.0-sample.json"))
        assert db.pending_reimports() == {}
    with VulnDb.open(path, readonly=True) as db:
        (finding,) = audit([zlib], db, db.analyses()).findings
    assert finding.vuln_id == "CVE-2018-25032"
    assert finding.analysis is not None and finding.analysis.state == "not_affected"
    status = run_cli("vulndb", "status", "--db", path, "--json")
    assert status.code == 0, status.err
    assert json.loads(status.out)["pending_reimports"] == {}
