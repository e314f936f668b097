"""What the audit makes of real-world advisory records.

Each test imports crafted feeds in the real formats (OSV records as osv.dev
publishes them, NVD CVE JSON 2.0, the CISA KEV catalog) through the real path,
``read_feed`` then ``VulnDb.import_feed``, and audits components as syft,
trivy or a dpkg status file describe them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from repo_support import CliResult
from sbom.audit import AuditResult, audit
from sbom.feeds import read_feed
from sbom.model import SbomComponent, component_identity
from sbom.vex import Analysis
from sbom.vulndb import ImportRecord, VulnDb


# ------------------------------------------------------------------ helpers
def _import(db_path: Path, *docs: Any) -> list[ImportRecord]:
    """Import each JSON document as one feed file, in order."""
    records = []
    with VulnDb.open(db_path, create=True) as db:
        for doc in docs:
            n = len(db.imports())
            path = db_path.parent / f"feed-{n}.json"
            path.write_text(json.dumps(doc), encoding="utf-8")
            records.append(db.import_feed(read_feed(path)))
    return records


def _audit(db_path: Path, *components: SbomComponent, analyses: Any = ()) -> AuditResult:
    with VulnDb.open(db_path, readonly=True) as db:
        return audit(components, db, analyses)


def _deb(name: str, version: str, purl: str) -> SbomComponent:
    return SbomComponent(
        bom_ref=f"pkg:{name}@{version}", type="library", name=name, version=version, purl=purl
    )


def _osv_range(fixed: str) -> list[dict[str, Any]]:
    return [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]


def _distro_record(
    record_id: str, cve: str, package: str, fixes: dict[str, str], details: str = ""
) -> dict[str, Any]:
    """A DEBIAN-CVE / UBUNTU-CVE / ALPINE-CVE record: one entry per release."""
    return {
        "schema_version": "1.6.0",
        "id": record_id,
        "modified": "2024-09-18T05:03:44Z",
        "published": "2023-09-12T15:15:24Z",
        "upstream": [cve],
        "details": details,
        "affected": [
            {
                "package": {"ecosystem": ecosystem, "name": package},
                "ranges": _osv_range(fixed),
            }
            for ecosystem, fixed in fixes.items()
        ],
    }


def _nvd_feed(*cves: dict[str, Any]) -> dict[str, Any]:
    return {
        "resultsPerPage": len(cves),
        "startIndex": 0,
        "totalResults": len(cves),
        "format": "NVD_CVE",
        "version": "2.0",
        "timestamp": "2024-09-18T03:00:00.000",
        "vulnerabilities": [{"cve": cve} for cve in cves],
    }


def _nvd_cve(
    cve_id: str,
    *,
    status: str = "Analyzed",
    description: str = "",
    metrics: dict[str, Any] | None = None,
    cpe_matches: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    configurations = (
        [{"nodes": [{"operator": "OR", "negate": False, "cpeMatch": list(cpe_matches)}]}]
        if cpe_matches
        else []
    )
    return {
        "id": cve_id,
        "sourceIdentifier": "cve@mitre.org",
        "published": "2023-09-12T15:15:24.327",
        "lastModified": "2024-09-18T00:00:00.000",
        "vulnStatus": status,
        "descriptions": [{"lang": "en", "value": description}],
        "metrics": metrics or {},
        "configurations": configurations,
    }


def _metric(source: str, kind: str, version: str, vector: str, score: float) -> dict[str, Any]:
    return {
        "source": source,
        "type": kind,
        "cvssData": {"version": version, "vectorString": vector, "baseScore": score},
    }


def _cpe_match(criteria: str, **bounds: str) -> dict[str, Any]:
    return {
        "vulnerable": True,
        "criteria": criteria,
        "matchCriteriaId": "0DA8FC60-5C9E-4A36-A11B-E3AF7F1CE9A4",
        **bounds,
    }


_WEBP_V31 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H"
_WEBP_NVD = _nvd_cve(
    "CVE-2023-4863",
    description="Heap buffer overflow in libwebp in Google Chrome prior to 116.0.5845.187 "
    "and libwebp 1.3.2 allowed a remote attacker to perform an out of bounds memory write "
    "via a crafted HTML page.",
    metrics={"cvssMetricV31": [_metric("nvd@nist.gov", "Primary", "3.1", _WEBP_V31, 8.8)]},
    cpe_matches=[
        _cpe_match(
            "cpe:2.3:a:webmproject:libwebp:*:*:*:*:*:*:*:*",
            versionStartIncluding="0.5.0",
            versionEndExcluding="1.3.2",
        )
    ],
)
_KEV = {
    "title": "CISA Catalog of Known Exploited Vulnerabilities",
    "catalogVersion": "2024.09.18",
    "dateReleased": "2024-09-18T16:00:14.2596Z",
    "count": 1,
    "vulnerabilities": [
        {
            "cveID": "CVE-2023-4863",
            "vendorProject": "Google",
            "product": "Chromium WebP",
            "vulnerabilityName": "Google Chromium WebP Heap-Based Buffer Overflow Vulnerability",
            "dateAdded": "2023-09-13",
            "shortDescription": "Google Chromium WebP contains a heap-based buffer overflow.",
            "requiredAction": "Apply mitigations per vendor instructions.",
            "dueDate": "2023-10-04",
            "knownRansomwareCampaignUse": "Unknown",
            "notes": "https://chromereleases.googleblog.com/",
            "cwes": ["CWE-787"],
        }
    ],
}
_WEBP_DEBIAN = _distro_record(
    "DEBIAN-CVE-2023-4863",
    "CVE-2023-4863",
    "libwebp",
    # osv.dev lists the releases in no particular order
    {"Debian:12": "1.2.4-0.2+deb12u1", "Debian:11": "0.6.1-2.1+deb11u2"},
)
_WEBP_UBUNTU = _distro_record(
    "UBUNTU-CVE-2023-4863",
    "CVE-2023-4863",
    "libwebp",
    {"Ubuntu:22.04:LTS": "1.2.2-2ubuntu0.22.04.2", "Ubuntu:20.04:LTS": "0.6.1-2ubuntu0.20.04.3"},
)
_WEBP_ALPINE = _distro_record(
    "ALPINE-CVE-2023-4863",
    "CVE-2023-4863",
    "libwebp",
    {"Alpine:v3.18": "1.3.2-r0", "Alpine:v3.17": "1.2.4-r3"},
)


# ------------------------------------------------- 1. OSV upstream ids
@pytest.mark.parametrize(
    ("record", "component", "fixed"),
    [
        (
            _WEBP_DEBIAN,
            _deb(
                "libwebp7",
                "1.2.4-0.2",
                "pkg:deb/debian/libwebp7@1.2.4-0.2?arch=amd64&distro=debian-12&upstream=libwebp",
            ),
            "1.2.4-0.2+deb12u1",
        ),
        (
            _WEBP_UBUNTU,
            _deb(
                "libwebp7",
                "1.2.2-2ubuntu0.22.04.1",
                "pkg:deb/ubuntu/libwebp7@1.2.2-2ubuntu0.22.04.1"
                "?arch=amd64&distro=ubuntu-22.04&upstream=libwebp",
            ),
            "1.2.2-2ubuntu0.22.04.2",
        ),
    ],
    ids=["debian", "ubuntu"],
)
def test_debian_record_with_upstream_cve_gets_kev_and_vex(
    tmp_path: Path, record: dict[str, Any], component: SbomComponent, fixed: str
) -> None:
    db = tmp_path / "vulndb.sqlite"
    _import(db, record, _nvd_feed(_WEBP_NVD), _KEV)

    (finding,) = _audit(db, component).findings
    assert finding.vuln_id == "CVE-2023-4863"
    assert finding.aliases == (record["id"],)
    assert finding.matched_by == ("purl",)
    assert finding.kev is not None and finding.kev.due_date == "2023-10-04"
    assert finding.fixed_versions == (fixed,)
    # The record has no severity of its own: NVD's record of its CVE gives it.
    assert (finding.cvss_score, finding.cvss_vector, finding.severity) == (8.8, _WEBP_V31, "high")
    assert finding.sources == ("nvd:CVE-2023-4863", f"osv:{record['id']}")
    assert finding.summary.startswith("Heap buffer overflow in libwebp")

    # An analysis recorded against the CVE id (as `vex record --vuln CVE-...` does) applies.
    identity, hashes = component_identity(component)
    statement = Analysis(
        "CVE-2023-4863",
        identity,
        hashes,
        "exploitable",
        responses=("update",),
        author="J. Doe",
        timestamp="2024-09-18T12:00:00Z",
    )
    (analysed,) = _audit(db, component, analyses=[statement]).findings
    assert analysed.analysis == statement
    assert not analysed.needs_triage


# ------------------------------------- 2. purls no advisory source covers
_ZLIB_CPE = "cpe:2.3:a:zlib:zlib:1.2.11:*:*:*:*:*:*:*"


@pytest.mark.parametrize(
    ("component", "reason"),
    [
        (
            SbomComponent(
                "component:mbedtls@3.6.2",
                "library",
                "mbedtls",
                "3.6.2",
                purl="pkg:github/mbed-tls/mbedtls@v3.6.2",
            ),
            "purl type github is not covered by the advisory sources",
        ),
        (
            SbomComponent(
                "component:zlib@1.2.11",
                "library",
                "zlib",
                "1.2.11",
                purl="pkg:generic/zlib@1.2.11",
            ),
            "purl type generic is not covered by the advisory sources",
        ),
        (
            SbomComponent(
                "libssl3",
                "library",
                "libssl3",
                "3.0.11-1~deb12u2",
                purl="pkg:deb/raspbian/libssl3@3.0.11-1~deb12u2?arch=armhf&upstream=openssl",
            ),
            "purl type deb with namespace raspbian is not covered by the advisory sources",
        ),
        (
            SbomComponent(
                "openssl-libs",
                "library",
                "openssl-libs",
                "1:3.0.7-24.el9",
                purl="pkg:rpm/redhat/openssl-libs@3.0.7-24.el9?arch=x86_64&epoch=1",
            ),
            "purl type rpm is not covered by the advisory sources",
        ),
        (
            SbomComponent("component:infusion-control@8.1.0", "application", "infusion-control"),
            "no purl or CPE",
        ),
        # The same generic purl with a CPE is checked, against NVD.
        (
            SbomComponent(
                "component:zlib@1.2.11",
                "library",
                "zlib",
                "1.2.11",
                purl="pkg:generic/zlib@1.2.11",
                cpe=_ZLIB_CPE,
            ),
            None,
        ),
    ],
    ids=["github", "generic", "deb-raspbian", "rpm-redhat", "no-identifier", "generic-with-cpe"],
)
def test_purl_type_no_source_covers_is_reported_not_checked(
    vulndb_path: Path, component: SbomComponent, reason: str | None
) -> None:
    result = _audit(vulndb_path, component)
    if reason is None:
        assert result.not_checked() == []
        assert [f.vuln_id for f in result.findings] == ["CVE-2018-25032"]
    else:
        ((unchecked, why),) = result.not_checked()
        assert unchecked == component
        assert why.startswith(reason)
        assert result.unidentified == (component,)


def test_audit_output_gives_the_reason_a_component_was_not_checked(
    run_cli: Callable[..., CliResult],
    make_sbom: Callable[..., bytes],
    vulndb_path: Path,
    tmp_path: Path,
) -> None:
    manifest = tmp_path / "components.toml"
    manifest.write_text(
        '[[component]]\nname = "mbedtls"\nversion = "3.6.2"\n'
        'purl = "pkg:github/Mbed-TLS/mbedtls@v3.6.2"\n',
        encoding="utf-8",
    )
    sbom = tmp_path / "sbom.cdx.json"
    sbom.write_bytes(make_sbom(components_manifest=manifest))
    text = run_cli("sbom", "audit", sbom, "--db", vulndb_path)
    assert text.code == 0, text.err
    assert (
        "not checked: mbedtls@3.6.2: purl type github is not covered by the advisory sources"
        in text.out
    )
    doc = json.loads(run_cli("sbom", "audit", sbom, "--db", vulndb_path, "--json").out)
    (unchecked,) = doc["unidentified"]
    assert unchecked["name"] == "mbedtls"
    assert unchecked["reason"] == "purl type github is not covered by the advisory sources"


# ------------------------------------------------ 3. NVD's CVSS metrics
_V40_CNA = "CVSS:4.0/AV:N/AC:L/AT:N/PR:L/UI:N/VC:L/VI:L/VA:L/SC:N/SI:N/SA:N"
_V40_HIGH = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"
_V31_NVD = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
_V31_CNA = "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:L/I:L/A:L"
_V31_DOS = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"
_V31_DOS_CNA = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"
_V2 = "AV:N/AC:L/Au:N/C:C/I:C/A:C"


@pytest.mark.parametrize(
    ("metrics", "score", "vector", "version", "severity"),
    [
        # A 2024 record: the CNA (VulDB) scores 4.0 and 3.1, NVD's own 3.1 is higher.
        (
            {
                "cvssMetricV40": [_metric("cna@vuldb.com", "Secondary", "4.0", _V40_CNA, 5.3)],
                "cvssMetricV31": [
                    _metric("nvd@nist.gov", "Primary", "3.1", _V31_NVD, 9.8),
                    _metric("cna@vuldb.com", "Secondary", "3.1", _V31_CNA, 6.3),
                ],
            },
            9.8,
            _V31_NVD,
            "3.1",
            "critical",
        ),
        # The CNA's 4.0 score is the highest.
        (
            {
                "cvssMetricV40": [_metric("cna@vuldb.com", "Secondary", "4.0", _V40_HIGH, 9.3)],
                "cvssMetricV31": [_metric("nvd@nist.gov", "Primary", "3.1", _V31_DOS, 7.5)],
            },
            9.3,
            _V40_HIGH,
            "4.0",
            "critical",
        ),
        # An old record whose 2.0 score is above its 3.1 score.
        (
            {
                "cvssMetricV31": [_metric("nvd@nist.gov", "Primary", "3.1", _V31_NVD, 9.8)],
                "cvssMetricV2": [_metric("nvd@nist.gov", "Primary", "2.0", _V2, 10.0)],
            },
            10.0,
            _V2,
            "2.0",
            "critical",
        ),
        # A tie: the newer version, then NVD's own entry.
        (
            {
                "cvssMetricV40": [_metric("cna@vuldb.com", "Secondary", "4.0", _V40_CNA, 7.5)],
                "cvssMetricV31": [_metric("nvd@nist.gov", "Primary", "3.1", _V31_DOS, 7.5)],
            },
            7.5,
            _V40_CNA,
            "4.0",
            "high",
        ),
        (
            {
                "cvssMetricV31": [
                    _metric("cna@vuldb.com", "Secondary", "3.1", _V31_DOS_CNA, 7.5),
                    _metric("nvd@nist.gov", "Primary", "3.1", _V31_DOS, 7.5),
                ]
            },
            7.5,
            _V31_DOS,
            "3.1",
            "high",
        ),
    ],
    ids=["nvd-3.1-over-cna-4.0", "cna-4.0-highest", "v2-highest", "tie-newer", "tie-primary"],
)
def test_highest_cvss_score_wins_across_versions(
    tmp_path: Path,
    metrics: dict[str, Any],
    score: float,
    vector: str,
    version: str,
    severity: str,
) -> None:
    db = tmp_path / "vulndb.sqlite"
    cve = _nvd_cve(
        "CVE-2024-7264",
        description="libfoo before 2.0 has a buffer overflow in its ASN.1 parser.",
        metrics=metrics,
        cpe_matches=[_cpe_match("cpe:2.3:a:foo:libfoo:*:*:*:*:*:*:*:*", versionEndExcluding="2.0")],
    )
    _import(db, _nvd_feed(cve))
    component = SbomComponent(
        "c", "library", "libfoo", "1.4", cpe="cpe:2.3:a:*:libfoo:1.4:*:*:*:*:*:*:*"
    )
    (finding,) = _audit(db, component).findings
    assert (finding.cvss_score, finding.cvss_vector) == (score, vector)
    assert finding.cvss_version == version
    assert finding.severity == severity
    assert finding.to_json()["cvss_version"] == version


# ------------------------------------------ 4. distribution releases
@pytest.mark.parametrize(
    ("record", "component", "expected"),
    [
        # bullseye at bullseye's fix: bookworm's range must not apply.
        (
            _WEBP_DEBIAN,
            _deb(
                "libwebp6",
                "0.6.1-2.1+deb11u2",
                "pkg:deb/debian/libwebp6@0.6.1-2.1%2Bdeb11u2"
                "?arch=amd64&distro=debian-11&upstream=libwebp",
            ),
            None,
        ),
        # bullseye before the fix (release given by code name): bullseye's fixed version.
        (
            _WEBP_DEBIAN,
            _deb(
                "libwebp6",
                "0.6.1-2.1+deb11u1",
                "pkg:deb/debian/libwebp6@0.6.1-2.1%2Bdeb11u1"
                "?arch=amd64&distro=bullseye&upstream=libwebp",
            ),
            (("0.6.1-2.1+deb11u2",), ()),
        ),
        # bookworm, release with a point version as trivy writes it.
        (
            _WEBP_DEBIAN,
            _deb(
                "libwebp7",
                "1.2.4-0.2",
                "pkg:deb/debian/libwebp7@1.2.4-0.2?arch=amd64&distro=debian-12.7&upstream=libwebp",
            ),
            (("1.2.4-0.2+deb12u1",), ()),
        ),
        # No distro qualifier: every release is tried, and the finding says so.
        (
            _WEBP_DEBIAN,
            _deb(
                "libwebp6",
                "0.6.1-2.1+deb11u2",
                "pkg:deb/debian/libwebp6@0.6.1-2.1%2Bdeb11u2?arch=amd64&upstream=libwebp",
            ),
            (
                ("1.2.4-0.2+deb12u1",),
                (
                    "the component's debian release could not be determined (its purl has no "
                    "distro qualifier): affected as Debian:12, not as Debian:11",
                ),
            ),
        ),
        # Ubuntu focal at focal's fix: jammy's range must not apply.
        (
            _WEBP_UBUNTU,
            _deb(
                "libwebp6",
                "0.6.1-2ubuntu0.20.04.3",
                "pkg:deb/ubuntu/libwebp6@0.6.1-2ubuntu0.20.04.3"
                "?arch=amd64&distro=ubuntu-20.04&upstream=libwebp",
            ),
            None,
        ),
        # Alpine 3.17 at 3.17's fix: 3.18's range must not apply.
        (
            _WEBP_ALPINE,
            _deb(
                "libwebp",
                "1.2.4-r3",
                "pkg:apk/alpine/libwebp@1.2.4-r3?arch=x86_64&distro=alpine-3.17.5",
            ),
            None,
        ),
    ],
    ids=[
        "bullseye-fixed",
        "bullseye-vulnerable",
        "bookworm-vulnerable",
        "debian-release-unknown",
        "focal-fixed",
        "alpine-3.17-fixed",
    ],
)
def test_debian_fix_of_the_components_release_is_used(
    tmp_path: Path,
    record: dict[str, Any],
    component: SbomComponent,
    expected: tuple[tuple[str, ...], tuple[str, ...]] | None,
) -> None:
    db = tmp_path / "vulndb.sqlite"
    _import(db, record)
    findings = _audit(db, component).findings
    if expected is None:
        assert findings == ()
        return
    (finding,) = findings
    assert finding.vuln_id == "CVE-2023-4863"
    assert (finding.fixed_versions, finding.notes) == expected
    assert finding.to_json()["notes"] == list(expected[1])


# ------------------------------------------------ 6. withdrawn OSV records
_WITHDRAWN = {
    "schema_version": "1.4.0",
    "id": "GHSA-j8r2-6x86-q33q",
    "modified": "2023-06-30T20:35:07Z",
    "published": "2023-05-22T20:36:32Z",
    "aliases": [],
    "summary": "Unintended leak of Proxy-Authorization header in requests",
    "database_specific": {"severity": "MODERATE"},
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "requests"},
            "ranges": _osv_range("2.31.0"),
        }
    ],
}


@pytest.mark.parametrize(
    "feeds",
    [
        # the record arrives already withdrawn
        [{**_WITHDRAWN, "withdrawn": "2023-06-30T20:35:07Z"}],
        # the record was imported, then osv.dev withdrew it
        [_WITHDRAWN, {**_WITHDRAWN, "withdrawn": "2023-06-30T20:35:07Z"}],
    ],
    ids=["withdrawn-on-first-import", "withdrawn-after-import"],
)
def test_withdrawn_osv_record_is_not_reported(tmp_path: Path, feeds: list[Any]) -> None:
    db = tmp_path / "vulndb.sqlite"
    records = _import(db, *feeds)
    assert records[-1].advisories == 0
    assert records[-1].removed == 1
    requests = SbomComponent("c", "library", "requests", "2.28.1", purl="pkg:pypi/requests@2.28.1")
    assert _audit(db, requests).findings == ()
    with VulnDb.open(db, readonly=True) as store:
        assert store.counts()["osv"] == 0
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM affected_packages").fetchone() == (0,)


# --------------------------------------------------- 7. rejected CVEs
def test_cve_rejected_later_is_removed_from_the_store(tmp_path: Path) -> None:
    db = tmp_path / "vulndb.sqlite"
    analyzed = _nvd_cve(
        "CVE-2023-99999",
        description="A heap overflow in zlib's inflate allows remote code execution.",
        metrics={"cvssMetricV31": [_metric("nvd@nist.gov", "Primary", "3.1", _V31_NVD, 9.8)]},
        cpe_matches=[
            _cpe_match("cpe:2.3:a:zlib:zlib:*:*:*:*:*:*:*:*", versionEndExcluding="1.2.12")
        ],
    )
    rejected = _nvd_cve(
        "CVE-2023-99999",
        status="Rejected",
        description="** REJECT ** DO NOT USE THIS CANDIDATE NUMBER. Reason: a duplicate of "
        "CVE-2018-25032.",
    )
    zlib = SbomComponent("c", "library", "zlib", "1.2.11", cpe=_ZLIB_CPE)
    # The yearly feed, then nvdcve-2.0-modified with the rejection.
    _import(db, _nvd_feed(analyzed))
    assert [f.vuln_id for f in _audit(db, zlib).findings] == ["CVE-2023-99999"]
    (record,) = _import(db, _nvd_feed(rejected))

    assert (record.advisories, record.removed) == (0, 1)
    assert _audit(db, zlib).findings == ()
    with VulnDb.open(db, readonly=True) as store:
        assert store.counts()["nvd"] == 0
        assert [r.removed for r in store.imports()] == [0, 1]
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM affected_cpes").fetchone() == (0,)
