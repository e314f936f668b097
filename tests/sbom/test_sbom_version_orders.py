"""Versions ordered as their ecosystem orders them, and never ordered by guess.

Each pair below is ordered as the ecosystem's own reference says (named on
each table) and as ``univers`` orders it; the hand-written generic order that
pumpguard used before got many of them wrong, and through
:func:`sbom.audit.osv_affects` that gave "not affected" for affected versions.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from sbom._purl import package_key
from sbom.advisory import Advisory, CpeRange, KevEntry, OsvRange, PackageRange
from sbom.audit import audit, osv_affects
from sbom.model import SbomComponent
from sbom.versions import Scheme, UnorderableVersionError, compare

# Maven: ComparableVersionTest (maven-artifact) and the "Version Order
# Specification" of the POM reference: alpha < beta < milestone < rc = cr <
# snapshot < "" = ga = final = release < sp < other qualifiers < numbers; a, b and m
# followed by a digit stand for alpha, beta and milestone.
MAVEN_ORDERED = [
    ("2.17.0-m1", "2.17.0"),
    ("1-alpha2", "1-beta-2"),
    ("1-beta123", "1-m2"),
    ("1-m2", "1-m11"),
    ("1-m11", "1-rc"),
    ("1-cr2", "1-rc123"),
    ("1-rc123", "1-SNAPSHOT"),
    ("1-SNAPSHOT", "1"),
    ("1", "1-sp"),
    ("1-sp123", "1-abc"),
    ("1-abc", "1-def"),
    ("1-1-snapshot", "1-1"),
    ("1-2", "1-123"),
    ("2.0", "2-1"),
    ("2.0.123", "2.1.0"),
    ("2.1-a", "2.1b"),
    ("2.1.0.1", "2.2"),
    ("11.a2", "11.a11"),
    ("11.m11", "11"),
    ("1.0-alpha-1-SNAPSHOT", "1.0-alpha-1"),
    ("2.0.1-xyz", "2.0.1-123"),
    ("5.2.19.RELEASE", "5.2.20"),
]
MAVEN_EQUAL = [
    ("1", "1.0.0"),
    ("1", "1-0"),
    ("1ga", "1"),
    ("1final", "1"),
    ("2.17.0.Final", "2.17.0"),
    ("1cr", "1rc"),
    ("1m3", "1milestone3"),
    ("1X", "1x"),
    # Maven's alias univers lacks (see sbom/_univers.py)
    ("5.2.19.RELEASE", "5.2.19"),
    ("1.0-release", "1.0"),
]

# RubyGems: test_gem_version.rb (test_spaceship, test_semver) and Gem::Version's
# rules: a segment with a letter makes a prerelease, which comes before the
# release; trailing zero segments do not count.
RUBYGEMS_ORDERED = [
    ("1.0.a", "1.0"),
    ("1.8.2.a", "1.8.2"),
    ("1.8.2.a", "1.8.2.b"),
    ("1.8.2.a9", "1.8.2.a10"),
    ("0.0.0", "1.8.2"),
    ("1.0.0-alpha", "1.0.0-alpha.1"),
    ("1.0.0-alpha.1", "1.0.0-beta.2"),
    ("1.0.0-beta.2", "1.0.0-beta.11"),
    ("1.0.0-beta.11", "1.0.0-rc.1"),
    ("1.9.3.alpha.5", "1.9.3"),
    ("5.0.0", "5.0.0.1"),
]
RUBYGEMS_EQUAL = [("1.0", "1.0.0"), ("1.2.b1", "1.2.b.1")]

# Alpine apk: apk-tools' test/version.data (what `apk version -t` answers):
# letter after the last number, _alpha < _beta < _pre < _rc < (none) < _p,
# then -rN.
APK_ORDERED = [
    ("1.2.3-r1", "1.2.3_p1-r0"),
    ("1.2.3-r0", "1.2.3a-r0"),
    ("2.5.1-r8", "2.5.1a-r1"),
    ("1.8.5", "1.8.5_p2"),
    ("4.5_p1", "4.5_p1-r1"),
    ("1.0_p9-r0", "1.0_p10-r0"),
    ("1.0.4-r3", "1.0.4-r4"),
    ("1.3.5-r8", "1.3.5-r10"),
    ("1.1_alpha1", "1.1"),
    ("0.8_beta1", "0.8_beta2"),
    ("0.1.0_alpha_pre2", "0.1.0_alpha"),
    ("0.10.0", "0.10.1_rc1"),
    ("1.3_pre1-r1", "1.3.2"),
    ("1.7", "1.7b"),
    ("1.2.12.1", "1.2.13"),
    ("7.0.17", "7.0.174"),
    ("1.0.0_pre20191002222144-r0", "1.0.0_pre20210530193627-r0"),
]
APK_EQUAL = [("2.16.1-r3", "2.16.1-r3"), ("0.11.3", "0.11.3")]

# NuGet: "Package versioning", version precedence: four numbers (missing ones
# are zero), a pre-release before its release, labels compared without regard
# to case and numeric identifiers as numbers, metadata ignored.
NUGET_ORDERED = [
    ("1.0.0-alpha", "1.0.0-beta"),
    ("1.0.0-alpha", "1.0.0-Beta"),
    ("1.0.0-beta", "1.0.0"),
    ("1.0.0-rc.9", "1.0.0-rc.10"),
    ("1.0.0", "1.0.0.1"),
    ("4.3.0.1", "4.3.1"),
]
NUGET_EQUAL = [("1.0", "1.0.0.0"), ("1.0.0+abc", "1.0.0"), ("1.0.0-BETA", "1.0.0-beta")]

# Packagist: Composer's VersionParser pads numeric releases to four parts and
# version_compare orders them number by number.
COMPOSER_ORDERED = [("1.2", "1.2.0.1"), ("v2.4.1", "2.4.1.2"), ("1.9.9", "1.10.0")]
COMPOSER_EQUAL = [("v1.2", "1.2.0.0"), ("3", "3.0.0")]


def _table(scheme: Scheme, ordered: list[tuple[str, str]], equal: list[tuple[str, str]]) -> list:
    return [pytest.param(a, b, -1, scheme, id=f"{scheme.value}:{a}<{b}") for a, b in ordered] + [
        pytest.param(a, b, 0, scheme, id=f"{scheme.value}:{a}={b}") for a, b in equal
    ]


ORDER_TABLE = (
    _table(Scheme.MAVEN, MAVEN_ORDERED, MAVEN_EQUAL)
    + _table(Scheme.RUBYGEMS, RUBYGEMS_ORDERED, RUBYGEMS_EQUAL)
    + _table(Scheme.APK, APK_ORDERED, APK_EQUAL)
    + _table(Scheme.NUGET, NUGET_ORDERED, NUGET_EQUAL)
    + _table(Scheme.COMPOSER, COMPOSER_ORDERED, COMPOSER_EQUAL)
)


@pytest.mark.parametrize(("a", "b", "expected", "scheme"), ORDER_TABLE)
def test_versions_order_as_their_ecosystems_reference_says(
    a: str, b: str, expected: int, scheme: Scheme
) -> None:
    assert (compare(a, b, scheme) > 0) - (compare(a, b, scheme) < 0) == expected
    assert (compare(b, a, scheme) > 0) - (compare(b, a, scheme) < 0) == -expected


@pytest.mark.parametrize(
    ("version", "scheme"),
    [
        # apk accepts these, univers does not: unordered, never guessed
        ("1.0_git20240101-r0", Scheme.APK),
        ("006", Scheme.APK),
        ("1.0~abc-r0", Scheme.APK),
        ("not a gem", Scheme.RUBYGEMS),
        ("1..2", Scheme.NUGET),
        # Composer stability suffixes: neither univers nor pumpguard orders them right
        ("1.0.0-beta1", Scheme.COMPOSER),
        ("1.0.0-p1", Scheme.COMPOSER),
        ("dev-master", Scheme.COMPOSER),
    ],
)
def test_versions_their_ecosystem_scheme_cannot_parse_are_unorderable(
    version: str, scheme: Scheme
) -> None:
    with pytest.raises(UnorderableVersionError, match="cannot be ordered"):
        compare(version, "1.0", scheme)
    with pytest.raises(UnorderableVersionError):
        compare("1.0", version, scheme)


# ------------------------------------------------- false negatives, osv_affects
def _fixed_in(ecosystem: str, fixed: str) -> PackageRange:
    events = (("introduced", "0"), ("fixed", fixed))
    return PackageRange(ecosystem, "pkg", (OsvRange("ECOSYSTEM", events),))


@pytest.mark.parametrize(
    ("ecosystem", "version", "fixed"),
    [
        pytest.param("Alpine:v3.20", "1.2.3-r1", "1.2.3_p1-r0", id="alpine-patch-suffix"),
        pytest.param("Alpine:v3.20", "1.2.3-r0", "1.2.3a-r0", id="alpine-letter-suffix"),
        pytest.param("RubyGems", "1.0.a", "1.0", id="rubygems-prerelease"),
        pytest.param("Maven", "2.17.0-m1", "2.17.0", id="maven-milestone"),
    ],
)
def test_versions_before_the_fix_are_affected(ecosystem: str, version: str, fixed: str) -> None:
    package = _fixed_in(ecosystem, fixed)
    assert osv_affects(version, package)
    assert not osv_affects(fixed, package)


def test_an_ecosystem_pumpguard_cannot_order_is_not_evaluated() -> None:
    with pytest.raises(UnorderableVersionError, match="cannot order Hackage versions"):
        osv_affects("1.0", _fixed_in("Hackage", "1.1"))


def test_a_listed_version_or_a_semver_range_needs_no_ecosystem_order() -> None:
    listed = PackageRange(
        "Hackage", "pkg", (OsvRange("ECOSYSTEM", (("introduced", "0"),)),), ("1.0",)
    )
    assert osv_affects("1.0", listed)
    semver = PackageRange(
        "Hackage", "pkg", (OsvRange("SEMVER", (("introduced", "0"), ("fixed", "1.1.0"))),)
    )
    assert osv_affects("1.0.0", semver)


def test_one_range_that_matches_is_enough_even_if_another_cannot_be_evaluated() -> None:
    package = PackageRange(
        "Alpine:v3.20",
        "pkg",
        (
            OsvRange("ECOSYSTEM", (("introduced", "0"), ("fixed", "1.0_git20240101-r0"))),
            OsvRange("ECOSYSTEM", (("introduced", "0"), ("fixed", "1.2.4-r0"))),
        ),
    )
    assert osv_affects("1.2.3-r0", package)


# ------------------------------------------------------- not checked, in audit
class _Source:
    """An advisory source of a few OSV records, for :func:`sbom.audit.audit`."""

    def __init__(self, *advisories: Advisory) -> None:
        self._advisories = advisories

    def packages(self, ecosystem: str, name: str) -> list[tuple[Advisory, PackageRange]]:
        return [
            (a, p)
            for a in self._advisories
            for p in a.packages
            if package_key(p.ecosystem, p.name) == (ecosystem, name)
        ]

    def cpes(self, vendor: str, product: str) -> list[tuple[Advisory, CpeRange]]:
        return []

    def kev(self, cve_ids: Iterable[str]) -> dict[str, KevEntry]:
        return {}

    def nvd(self, cve_ids: Iterable[str]) -> dict[str, Advisory]:
        return {}


def _osv(vuln_id: str, *packages: PackageRange) -> Advisory:
    return Advisory(source="osv", id=vuln_id, severity="high", packages=packages)


def _apk(version: str) -> SbomComponent:
    return SbomComponent(
        bom_ref=f"apk:pkg@{version}",
        type="library",
        name="pkg",
        version=version,
        purl=f"pkg:apk/alpine/pkg@{version}?distro=alpine-3.20.1",
    )


def test_audit_reports_the_alpine_false_negative_as_a_finding() -> None:
    source = _Source(_osv("ALPINE-CVE-2024-0001", _fixed_in("Alpine:v3.20", "1.2.3_p1-r0")))
    result = audit([_apk("1.2.3-r1")], source)
    assert [f.vuln_id for f in result.findings] == ["ALPINE-CVE-2024-0001"]
    assert result.not_checked() == []


def test_a_version_that_cannot_be_ordered_is_listed_as_not_checked() -> None:
    source = _Source(
        _osv("ALPINE-CVE-2024-0001", _fixed_in("Alpine:v3.20", "1.2.4-r0")),
        _osv("ALPINE-CVE-2024-0002", _fixed_in("Alpine:v3.20", "1.2.5-r0")),
    )
    component = _apk("1.0_git20240101-r0")
    result = audit([component], source)
    assert result.findings == ()
    [(unchecked, reason)] = result.not_checked()
    assert unchecked == component
    assert "'1.0_git20240101-r0' cannot be ordered by Alpine apk rules" in reason
    assert "ALPINE-CVE-2024-0001, ALPINE-CVE-2024-0002" in reason


def test_findings_stay_when_another_advisory_cannot_be_evaluated() -> None:
    source = _Source(
        _osv("ALPINE-CVE-2024-0001", _fixed_in("Alpine:v3.20", "1.2.4-r0")),
        _osv("ALPINE-CVE-2024-0002", _fixed_in("Alpine:v3.20", "1.2.4_git20240101-r0")),
    )
    result = audit([_apk("1.2.3-r0")], source)
    assert [f.vuln_id for f in result.findings] == ["ALPINE-CVE-2024-0001"]
    [(_, reason)] = result.not_checked()
    assert "'1.2.4_git20240101-r0' cannot be ordered" in reason
    assert "ALPINE-CVE-2024-0002" in reason
