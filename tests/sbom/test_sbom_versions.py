"""Version ordering per ecosystem (sbom.versions) and CVSS scores (sbom._cvss).

The ecosystems ordered through univers, and Packagist, have their tables in
test_sbom_version_orders.py.
"""

from __future__ import annotations

import pytest

from sbom._cvss import base_score, rating
from sbom.versions import Scheme, UnorderableVersionError, compare, scheme_for_ecosystem


@pytest.mark.parametrize(
    ("older", "newer", "scheme"),
    [
        # semver 2.0.0 precedence, leniently parsed
        ("1.0.0-alpha", "1.0.0-alpha.1", Scheme.SEMVER),
        ("1.0.0-alpha.1", "1.0.0-alpha.beta", Scheme.SEMVER),
        ("1.0.0-rc.1", "1.0.0", Scheme.SEMVER),
        ("0.16.0", "v0.17.0", Scheme.SEMVER),
        ("1.9.0", "1.10.0", Scheme.SEMVER),
        # PEP 440 as PyPI orders it
        ("2.0.0a1", "2.0.0", Scheme.PEP440),
        ("1.26.16", "1.26.17", Scheme.PEP440),
        ("2.0.0.dev1", "2.0.0a1", Scheme.PEP440),
        ("2.0.0", "2.0.0.post1", Scheme.PEP440),
        # dpkg: epochs, tilde before everything, revisions
        ("1.2.13.dfsg-1", "1:1.2.11.dfsg-2", Scheme.DPKG),
        ("1:1.2.11.dfsg-2", "1:1.2.11.dfsg-2+deb11u1", Scheme.DPKG),
        ("1.0~rc1-1", "1.0-1", Scheme.DPKG),
        ("1.0-1", "1.0-1.1", Scheme.DPKG),
        ("1.0a", "1.0+", Scheme.DPKG),
        ("2.36.1-8", "2.36.1-8+deb11u1", Scheme.DPKG),
        # generic: OpenSSL letters, pre-release words, numeric runs
        ("1.1.1", "1.1.1a", Scheme.GENERIC),
        ("1.1.1k", "1.1.1n", Scheme.GENERIC),
        ("1.0.2zc", "1.0.2zd", Scheme.GENERIC),
        ("1.36.0-rc1", "1.36.0", Scheme.GENERIC),
        ("1.2.9", "1.2.12", Scheme.GENERIC),
    ],
)
def test_versions_order_as_their_ecosystem_does(older: str, newer: str, scheme: Scheme) -> None:
    assert compare(older, newer, scheme) < 0
    assert compare(newer, older, scheme) > 0


@pytest.mark.parametrize(
    ("a", "b", "scheme"),
    [
        ("1.0", "1.0.0", Scheme.GENERIC),
        ("v3.7.0", "3.7.0", Scheme.SEMVER),
        ("1.0", "1.0.0", Scheme.PEP440),
        ("0:1.0-1", "1.0-1", Scheme.DPKG),
    ],
)
def test_equivalent_spellings_compare_equal(a: str, b: str, scheme: Scheme) -> None:
    assert compare(a, b, scheme) == 0


@pytest.mark.parametrize(
    ("a", "b", "scheme"),
    [
        ("not-a-version-1", "not-a-version-2", Scheme.PEP440),
        ("2024.01", "2024.1.1", Scheme.SEMVER),
        ("1.2.3.4", "1.2.3", Scheme.SEMVER),
    ],
)
def test_versions_a_scheme_cannot_parse_are_never_ordered_by_guess(
    a: str, b: str, scheme: Scheme
) -> None:
    with pytest.raises(UnorderableVersionError, match=a):
        compare(a, b, scheme)


def test_the_generic_scheme_of_nvd_versions_orders_any_two_strings() -> None:
    assert compare("not-a-version-1", "not-a-version-2", Scheme.GENERIC) < 0


@pytest.mark.parametrize(
    ("ecosystem", "scheme"),
    [
        ("PyPI", Scheme.PEP440),
        ("Debian:11", Scheme.DPKG),
        ("Go", Scheme.SEMVER),
        ("npm", Scheme.SEMVER),
        ("Maven", Scheme.MAVEN),
        ("RubyGems", Scheme.RUBYGEMS),
        ("Alpine:v3.18", Scheme.APK),
        ("Wolfi", Scheme.APK),
        ("NuGet", Scheme.NUGET),
        ("Packagist", Scheme.COMPOSER),
        ("Hackage", None),
        ("CRAN", None),
        ("SwiftURL", None),
    ],
)
def test_ecosystems_map_to_their_scheme(ecosystem: str, scheme: Scheme | None) -> None:
    assert scheme_for_ecosystem(ecosystem) is scheme


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
        ("CVSS:3.1/AV:N/AC:H/PR:H/UI:N/S:U/C:H/I:H/A:N", 5.9),
        ("CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 8.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
    ],
)
def test_cvss_v3_base_score_matches_the_specification(vector: str, score: float) -> None:
    assert base_score(vector) == score


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        # CVSS v4.0 scores as FIRST's calculator gives them
        ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 9.3),
        ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H", 10.0),
        ("CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 8.5),
        ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N", 0.0),
    ],
)
def test_cvss_v4_vectors_are_scored(vector: str, score: float) -> None:
    assert base_score(vector) == score


@pytest.mark.parametrize(
    "vector",
    [
        "CVSS:4.0/AV:N/AC:L",
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/XX:Y",
        "CVSS:3.1/AV:N",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/AV:L",
        "AV:N/AC:L/Au:N/C:N/I:N/A:P",
        "",
    ],
)
def test_incomplete_or_unknown_cvss_vectors_have_no_score(vector: str) -> None:
    assert base_score(vector) is None


def test_cvss_ratings_follow_the_v31_bands() -> None:
    assert [rating(s) for s in (9.8, 7.0, 6.9, 0.1, 0.0, None)] == [
        "critical",
        "high",
        "medium",
        "low",
        "none",
        "unknown",
    ]
