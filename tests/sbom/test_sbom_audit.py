"""Matching components against real advisories (sbom.audit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sbom.advisory import CpeRange, OsvRange, PackageRange
from sbom.audit import AuditResult, audit, cpe_affects, osv_affects
from sbom.model import SbomComponent, component_identity
from sbom.vex import Analysis
from sbom.vulndb import VulnDb


def _component(
    name: str,
    version: str,
    *,
    purl: str | None = None,
    cpe: str | None = None,
    hashes: tuple[tuple[str, str], ...] = (),
) -> SbomComponent:
    return SbomComponent(
        bom_ref=f"component:{name}@{version}",
        type="library",
        name=name,
        version=version,
        purl=purl,
        cpe=cpe,
        hashes=hashes,
    )


def _audit(
    vulndb_path: Path, *components: SbomComponent, analyses: tuple[Analysis, ...] = ()
) -> AuditResult:
    with VulnDb.open(vulndb_path, readonly=True) as db:
        return audit(components, db, analyses)


def _cpe(vendor: str, product: str, version: str = "*") -> str:
    return f"cpe:2.3:a:{vendor}:{product}:{version}:*:*:*:*:*:*:*"


@pytest.mark.parametrize(
    ("component", "expected"),
    [
        # zlib CVE-2018-25032 via NVD (versionEndExcluding 1.2.12)
        (_component("zlib", "1.2.11", cpe=_cpe("zlib", "zlib", "1.2.11")), {"CVE-2018-25032"}),
        (_component("zlib", "1.2.11", cpe=_cpe("zlib", "zlib")), {"CVE-2018-25032"}),
        (_component("zlib", "1.2.12", cpe=_cpe("zlib", "zlib", "1.2.12")), set()),
        (_component("zlib", "1.3.1", cpe=_cpe("zlib", "zlib", "1.3.1")), set()),
        # ... and via the Debian advisory DSA-5111-1 (source package zlib)
        (
            _component(
                "zlib1g",
                "1:1.2.11.dfsg-2",
                purl="pkg:deb/debian/zlib1g@1:1.2.11.dfsg-2?arch=amd64&upstream=zlib",
            ),
            {"CVE-2018-25032"},
        ),
        (
            _component(
                "zlib1g",
                "1:1.2.11.dfsg-2+deb11u1",
                purl="pkg:deb/debian/zlib1g@1:1.2.11.dfsg-2%2Bdeb11u1?upstream=zlib",
            ),
            set(),
        ),
        (
            _component(
                "zlib1g",
                "1:1.2.13.dfsg-1",
                purl="pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?upstream=zlib",
            ),
            set(),
        ),
        # OpenSSL CVE-2022-0778: three ranges
        (
            _component("openssl", "1.1.1k", cpe=_cpe("openssl", "openssl", "1.1.1k")),
            {"CVE-2022-0778"},
        ),
        (_component("openssl", "1.1.1n", cpe=_cpe("openssl", "openssl", "1.1.1n")), set()),
        (_component("openssl", "1.1.1w", cpe=_cpe("openssl", "openssl", "1.1.1w")), set()),
        (
            _component("openssl", "3.0.0", cpe=_cpe("openssl", "openssl", "3.0.0")),
            {"CVE-2022-0778"},
        ),
        (
            _component("openssl", "3.0.1", cpe=_cpe("openssl", "openssl", "3.0.1")),
            {"CVE-2022-0778"},
        ),
        (_component("openssl", "3.0.2", cpe=_cpe("openssl", "openssl", "3.0.2")), set()),
        (
            _component("openssl", "1.0.2zc", cpe=_cpe("openssl", "openssl", "1.0.2zc")),
            {"CVE-2022-0778"},
        ),
        (_component("openssl", "1.0.2zd", cpe=_cpe("openssl", "openssl", "1.0.2zd")), set()),
        (_component("openssl", "1.0.1u", cpe=_cpe("openssl", "openssl", "1.0.1u")), set()),
        # BusyBox CVE-2022-48174 (versionEndExcluding 1.36.0)
        (
            _component("busybox", "1.35.0", cpe=_cpe("busybox", "busybox", "1.35.0")),
            {"CVE-2022-48174"},
        ),
        (_component("busybox", "1.36.0", cpe=_cpe("busybox", "busybox", "1.36.0")), set()),
        (_component("busybox", "1.36.1", cpe=_cpe("busybox", "busybox", "1.36.1")), set()),
        # a CPE without vendor (as Yocto's cve-check writes them)
        (_component("busybox", "1.35.0", cpe=_cpe("*", "busybox", "1.35.0")), {"CVE-2022-48174"}),
        # another vendor's product of the same name is not matched
        (_component("busybox", "1.35.0", cpe=_cpe("acme", "busybox", "1.35.0")), set()),
        # Go SEMVER range (HTTP/2 rapid reset)
        (
            _component("x/net", "v0.16.0", purl="pkg:golang/golang.org/x/net@v0.16.0"),
            {"CVE-2023-44487"},
        ),
        (_component("x/net", "v0.17.0", purl="pkg:golang/golang.org/x/net@v0.17.0"), set()),
        (
            _component("grpc", "1.57.0", purl="pkg:golang/google.golang.org/grpc@v1.57.0"),
            {"CVE-2023-44487"},
        ),
        (_component("grpc", "1.57.1", purl="pkg:golang/google.golang.org/grpc@v1.57.1"), set()),
        (
            _component("nghttp2", "1.56.0", cpe=_cpe("nghttp2", "nghttp2", "1.56.0")),
            {"CVE-2023-44487"},
        ),
        # PyPI ECOSYSTEM ranges (PEP 440 ordering)
        (_component("urllib3", "1.26.16", purl="pkg:pypi/urllib3@1.26.16"), {"CVE-2023-43804"}),
        (_component("urllib3", "1.26.17", purl="pkg:pypi/urllib3@1.26.17"), set()),
        (_component("urllib3", "2.0.5", purl="pkg:pypi/urllib3@2.0.5"), {"CVE-2023-43804"}),
        (_component("urllib3", "2.0.6", purl="pkg:pypi/urllib3@2.0.6"), set()),
        (_component("urllib3", "2.0.0a1", purl="pkg:pypi/urllib3@2.0.0a1"), set()),
        (_component("urllib3", "1.26.16", purl="pkg:pypi/URLLib3@1.26.16"), {"CVE-2023-43804"}),
    ],
    ids=lambda v: (
        v.label + (" " + (v.purl or v.cpe or ""))
        if isinstance(v, SbomComponent)
        else ",".join(sorted(v)) or "none"
    ),
)
def test_affected_versions_match_and_fixed_ones_do_not(
    vulndb_path: Path, component: SbomComponent, expected: set[str]
) -> None:
    result = _audit(vulndb_path, component)
    assert {f.vuln_id for f in result.findings} == expected


def test_fixed_zlib_version_is_not_reported(vulndb_path: Path) -> None:
    fixed = _component("zlib", "1.2.12", cpe=_cpe("zlib", "zlib", "1.2.12"))
    vulnerable = _component("zlib", "1.2.11", cpe=_cpe("zlib", "zlib", "1.2.11"))
    result = _audit(vulndb_path, fixed, vulnerable)
    assert [f.component for f in result.findings] == [vulnerable]
    assert result.findings[0].fixed_versions == ("1.2.12",)


def test_one_vulnerability_from_two_feeds_is_one_finding(vulndb_path: Path) -> None:
    # DSA-5111-1 (OSV, alias CVE-2018-25032) and the NVD CVE describe one flaw.
    both = SbomComponent(
        bom_ref="c",
        type="library",
        name="zlib",
        version="1:1.2.11.dfsg-2",
        purl="pkg:deb/debian/zlib@1:1.2.11.dfsg-2",
        cpe="cpe:2.3:a:zlib:zlib:1.2.11:*:*:*:*:*:*:*",
    )
    (finding,) = _audit(vulndb_path, both).findings
    assert finding.vuln_id == "CVE-2018-25032"
    assert finding.aliases == ("DSA-5111-1",)
    assert finding.matched_by == ("cpe", "purl")
    assert finding.sources == ("nvd:CVE-2018-25032", "osv:DSA-5111-1")
    assert finding.cvss_score == 7.5
    assert finding.severity == "high"
    assert set(finding.fixed_versions) == {"1:1.2.11.dfsg-2+deb11u1", "1.2.12"}


def test_findings_carry_kev_status_and_sort_kev_first(vulndb_path: Path) -> None:
    result = _audit(
        vulndb_path,
        _component("busybox", "1.35.0", cpe=_cpe("busybox", "busybox", "1.35.0")),
        _component("x/net", "v0.16.0", purl="pkg:golang/golang.org/x/net@v0.16.0"),
        _component("zlib", "1.2.11", cpe=_cpe("zlib", "zlib", "1.2.11")),
    )
    assert [f.vuln_id for f in result.findings] == [
        "CVE-2023-44487",  # KEV, 7.5
        "CVE-2022-48174",  # 9.8
        "CVE-2018-25032",  # 7.5
    ]
    kev = result.findings[0].kev
    assert kev is not None and kev.date_added == "2023-10-10" and kev.due_date == "2023-10-31"
    assert result.findings[1].kev is None
    assert result.findings[1].severity == "critical"
    assert result.counts()["kev"] == 1


def test_osv_severity_is_computed_from_the_cvss_vector(vulndb_path: Path) -> None:
    (finding,) = _audit(
        vulndb_path, _component("urllib3", "2.0.5", purl="pkg:pypi/urllib3@2.0.5")
    ).findings
    assert finding.cvss_vector == "CVSS:3.1/AV:N/AC:H/PR:H/UI:N/S:U/C:H/I:H/A:N"
    assert finding.cvss_score == 5.9
    assert finding.severity == "medium"


def test_components_without_purl_or_cpe_are_reported_unchecked(vulndb_path: Path) -> None:
    bare = _component("infusion-control", "8.1.0")
    result = _audit(vulndb_path, bare)
    assert result.unidentified == (bare,)
    assert result.findings == ()


def test_vex_analysis_settles_a_finding_for_the_same_component_only(vulndb_path: Path) -> None:
    hashes = (("SHA-256", "ab" * 32),)
    zlib = _component("zlib", "1.2.11", cpe=_cpe("zlib", "zlib", "1.2.11"), hashes=hashes)
    rebuilt = _component(
        "zlib", "1.2.11", cpe=_cpe("zlib", "zlib", "1.2.11"), hashes=(("SHA-256", "cd" * 32),)
    )
    identity, digest = component_identity(zlib)
    statements = (
        Analysis(
            "CVE-2018-25032",
            identity,
            digest,
            "in_triage",
            author="qa",
            timestamp="2025-03-01T12:00:00Z",
        ),
        Analysis(
            "CVE-2018-25032",
            identity,
            digest,
            "not_affected",
            justification="code_not_reachable",
            detail="deflate is never called",
            author="qa",
            timestamp="2025-03-02T12:00:00Z",
        ),
    )
    result = _audit(vulndb_path, zlib, rebuilt, analyses=statements)
    settled = {f.component.hashes: f for f in result.findings}
    assert settled[hashes].analysis == statements[1]
    assert not settled[hashes].needs_triage
    assert settled[rebuilt.hashes].analysis is None
    assert settled[rebuilt.hashes].needs_triage
    assert result.counts()["needs_triage"] == 1


def test_in_triage_still_needs_triage(vulndb_path: Path) -> None:
    zlib = _component("zlib", "1.2.11", cpe=_cpe("zlib", "zlib", "1.2.11"))
    identity, digest = component_identity(zlib)
    triage = Analysis(
        "CVE-2018-25032", identity, digest, "in_triage", timestamp="2025-03-01T12:00:00Z"
    )
    (finding,) = _audit(vulndb_path, zlib, analyses=(triage,)).findings
    assert finding.analysis == triage
    assert finding.needs_triage


@pytest.mark.parametrize(
    ("events", "version", "affected"),
    [
        ((("introduced", "0"), ("fixed", "1.5")), "1.4.9", True),
        ((("introduced", "0"), ("fixed", "1.5")), "1.5", False),
        ((("introduced", "1.0"), ("last_affected", "1.2")), "1.2", True),
        ((("introduced", "1.0"), ("last_affected", "1.2")), "1.2.1", False),
        ((("introduced", "1.0"), ("last_affected", "1.2")), "0.9", False),
        # events in any order: sorted before evaluation
        (
            (("fixed", "2.1"), ("introduced", "2.0"), ("fixed", "1.1"), ("introduced", "1.0")),
            "1.5",
            False,
        ),
        (
            (("fixed", "2.1"), ("introduced", "2.0"), ("fixed", "1.1"), ("introduced", "1.0")),
            "2.0.5",
            True,
        ),
        ((("introduced", "1.0"),), "99.0", True),
        ((("introduced", "0"), ("limit", "2.0")), "2.5", False),
    ],
)
def test_osv_range_events_are_evaluated_as_the_schema_says(
    events: tuple[tuple[str, str], ...], version: str, affected: bool
) -> None:
    package = PackageRange("PyPI", "x", ranges=(OsvRange("ECOSYSTEM", events),))
    assert osv_affects(version, package) is affected


def test_git_ranges_match_only_through_listed_versions() -> None:
    package = PackageRange(
        "OSS-Fuzz",
        "zlib",
        ranges=(OsvRange("GIT", (("introduced", "abc123"), ("fixed", "def456"))),),
        versions=("v1.2.11",),
    )
    assert osv_affects("v1.2.11", package)
    assert not osv_affects("v1.2.10", package)


@pytest.mark.parametrize(
    ("cpe_range", "version", "affected"),
    [
        (CpeRange("a", "v", "p", "*", start_excluding="1.0"), "1.0", False),
        (CpeRange("a", "v", "p", "*", start_excluding="1.0"), "1.0.1", True),
        (CpeRange("a", "v", "p", "*", end_including="2.0"), "2.0", True),
        (CpeRange("a", "v", "p", "*", end_including="2.0"), "2.0.1", False),
        (CpeRange("a", "v", "p", "*"), "5.0", True),
        (CpeRange("a", "v", "p", "2.0"), "2.0", True),
        (CpeRange("a", "v", "p", "2.0"), "2.0.1", False),
        (CpeRange("a", "v", "p", "-"), "2.0", False),
    ],
)
def test_nvd_version_bounds(cpe_range: CpeRange, version: str, affected: bool) -> None:
    assert cpe_affects(version, "*", cpe_range) is affected
