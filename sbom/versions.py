"""Version ordering per ecosystem, for matching components against advisories.

Advisories say which versions are affected as ranges ("introduced 1.2.0, fixed
1.2.12"), and whether a component's version lies in a range depends on how its
ecosystem orders versions: Debian puts ``1.0~rc1`` before ``1.0``, PyPI puts
``1.0rc1`` before ``1.0``, semantic versioning puts ``1.0.0-rc.1`` before
``1.0.0``, Maven puts ``2.17.0-m1`` (a milestone) before ``2.17.0``, RubyGems
puts ``1.0.a`` before ``1.0``, and Alpine puts ``1.2.3_p1-r0`` (a patch
release) after ``1.2.3-r1``. Each scheme here is a pure function of two
strings; nothing is looked up.

Semantic versioning, PEP 440 (through :mod:`packaging`) and dpkg are the
project's own exact schemes. Maven, RubyGems, Alpine's apk and NuGet are
ordered by the maintained library ``univers`` (:mod:`sbom._univers`).
Packagist is ordered exactly for plain numeric releases only (see
:func:`_composer_key`). An ecosystem without a scheme, or a version its scheme
cannot parse, is not ordered by guess: :func:`compare` raises
:class:`UnorderableVersionError` and the audit lists the component as not
checked. Only :attr:`Scheme.GENERIC`, for NVD's free-form CPE versions that
belong to no ecosystem, orders any two strings.
"""

from __future__ import annotations

import enum
import functools
import re
from typing import Any

from packaging.version import InvalidVersion, Version

from sbom import _univers

__all__ = ["Scheme", "UnorderableVersionError", "compare", "scheme_for_ecosystem"]


class Scheme(enum.Enum):
    """A way of ordering versions."""

    #: semver.org 2.0.0, leniently: a leading ``v`` and missing minor/patch are accepted.
    SEMVER = "semver"
    #: PEP 440, as PyPI orders versions (through :mod:`packaging`).
    PEP440 = "pep440"
    #: Debian's ``[epoch:]upstream[-revision]``, ordered as dpkg does.
    DPKG = "dpkg"
    #: Maven's ComparableVersion (through ``univers``).
    MAVEN = "maven"
    #: RubyGems' Gem::Version (through ``univers``).
    RUBYGEMS = "rubygems"
    #: Alpine's apk versions, ``1.2.3a_p1-r0`` (through ``univers``).
    APK = "apk"
    #: NuGet's four-part versions with case-insensitive labels (through ``univers``).
    NUGET = "nuget"
    #: Composer (Packagist) versions; plain numeric releases only.
    COMPOSER = "composer"
    #: Runs of digits compared as numbers, letters as text; for NVD CPE versions.
    GENERIC = "generic"


class UnorderableVersionError(ValueError):
    """A version that cannot be ordered in its ecosystem: it is never ordered by guess."""


#: How each scheme is named in messages.
_LABELS = {
    Scheme.SEMVER: "semantic versioning",
    Scheme.PEP440: "PEP 440",
    Scheme.DPKG: "dpkg",
    Scheme.MAVEN: "Maven",
    Scheme.RUBYGEMS: "RubyGems",
    Scheme.APK: "Alpine apk",
    Scheme.NUGET: "NuGet",
    Scheme.COMPOSER: "Composer (plain numeric releases only)",
    Scheme.GENERIC: "generic",
}

# Schemes ordered by univers, and its class for each.
_UNIVERS = {
    Scheme.MAVEN: _univers.UniversScheme.MAVEN,
    Scheme.RUBYGEMS: _univers.UniversScheme.RUBYGEMS,
    Scheme.APK: _univers.UniversScheme.APK,
    Scheme.NUGET: _univers.UniversScheme.NUGET,
}

# OSV ecosystem (lower case, without a ":release" suffix) -> ordering of its versions.
# Ecosystems not listed (Hackage, CRAN, ConanCenter, SwiftURL, ...) have none:
# their ECOSYSTEM ranges are not evaluated.
_ECOSYSTEM_SCHEMES = {
    "pypi": Scheme.PEP440,
    "debian": Scheme.DPKG,
    "ubuntu": Scheme.DPKG,
    "npm": Scheme.SEMVER,
    "crates.io": Scheme.SEMVER,
    "go": Scheme.SEMVER,
    "hex": Scheme.SEMVER,
    "pub": Scheme.SEMVER,
    "maven": Scheme.MAVEN,
    "rubygems": Scheme.RUBYGEMS,
    "alpine": Scheme.APK,
    "wolfi": Scheme.APK,
    "chainguard": Scheme.APK,
    "nuget": Scheme.NUGET,
    "packagist": Scheme.COMPOSER,
}


def scheme_for_ecosystem(ecosystem: str) -> Scheme | None:
    """The ordering an OSV ecosystem's ``ECOSYSTEM`` ranges use.

    Args:
        ecosystem: An OSV ecosystem name such as ``PyPI`` or ``Debian:12``.

    Returns:
        The scheme, or ``None`` for an ecosystem pumpguard cannot order.
    """
    base = ecosystem.split(":", 1)[0].strip().lower()
    return _ECOSYSTEM_SCHEMES.get(base)


def compare(a: str, b: str, scheme: Scheme) -> int:
    """Compare two versions.

    Args:
        a: A version.
        b: Another version.
        scheme: How the ecosystem orders versions.

    Returns:
        A negative number if ``a`` comes before ``b``, zero if they are the
        same version, a positive number if ``a`` comes after ``b``.

    Raises:
        UnorderableVersionError: ``a`` or ``b`` is not a version of ``scheme``
            (every string is one of :attr:`Scheme.GENERIC` and of
            :attr:`Scheme.DPKG`, which orders any string as dpkg does).
    """
    if scheme is Scheme.DPKG:
        return _dpkg_compare(a, b)
    if scheme in _UNIVERS:
        return _univers_compare(a, b, _UNIVERS[scheme], scheme)
    key_a = _key(a, scheme)
    key_b = _key(b, scheme)
    return int(key_a > key_b) - int(key_a < key_b)


def _unorderable(version: str, scheme: Scheme) -> UnorderableVersionError:
    return UnorderableVersionError(f"{version!r} cannot be ordered by {_LABELS[scheme]} rules")


def _key(version: str, scheme: Scheme) -> Any:
    if scheme is Scheme.GENERIC:
        return _generic_key(version)
    key: Any
    if scheme is Scheme.SEMVER:
        key = _semver_key(version)
    elif scheme is Scheme.PEP440:
        key = _pep440_key(version)
    else:
        key = _composer_key(version)
    if key is None:
        raise _unorderable(version, scheme)
    return key


def _univers_compare(a: str, b: str, kind: _univers.UniversScheme, scheme: Scheme) -> int:
    result = _univers.compare(a, b, kind)
    if result is None:
        raise _unorderable(a if _univers.parse(a, kind) is None else b, scheme)
    return result


# ------------------------------------------------------------------ semver
# Kept rather than univers' SemverVersion: that one coerces what is not semver
# ("1.2.3.4" becomes "1.2.3+4", "2024.01" becomes "2024.1.0") where this refuses
# it, and it took 43 us a comparison here against 17 us for this one uncached.
_SEMVER_RE = re.compile(
    r"^v?(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]*)?$"
)


@functools.lru_cache(maxsize=65536)
def _semver_key(version: str) -> tuple[Any, ...] | None:
    m = _SEMVER_RE.match(version.strip())
    if m is None:
        return None
    major, minor, patch = (int(g) if g else 0 for g in m.group(1, 2, 3))
    pre_text = m.group(4)
    # semver 2.0.0 section 11: a release sorts after its pre-releases, numeric
    # identifiers before alphanumeric ones, and more identifiers after fewer.
    identifiers = pre_text.split(".") if pre_text else []
    pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in identifiers)
    return (major, minor, patch, 0 if pre_text else 1, pre)


# ------------------------------------------------------------------ PEP 440
@functools.lru_cache(maxsize=65536)
def _pep440_key(version: str) -> Version | None:
    try:
        return Version(version)
    except InvalidVersion:
        return None


# ---------------------------------------------------------------- Composer
# Composer's VersionParser::normalize pads a classic version (one to five
# digits, then up to three more numeric parts) to four parts, and
# version_compare orders such versions part by part as numbers. Anything with a
# stability suffix (-beta1, -RC2, -p1, dev-...) is left unordered: the
# hand-written generic scheme and univers' ComposerVersion (a semver coercion)
# both get those wrong (univers puts 1.0-RC1 before 1.0-beta2, 1.0.0-p1 before
# 1.0.0, and 2.4.1.2 equal to 2.4.1).
_COMPOSER_RE = re.compile(r"[vV]?(\d{1,5})(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?")


@functools.lru_cache(maxsize=65536)
def _composer_key(version: str) -> tuple[int, ...] | None:
    m = _COMPOSER_RE.fullmatch(version.strip())
    if m is None:
        return None
    return tuple(int(g) if g else 0 for g in m.groups())


# ------------------------------------------------------------------ generic
_TOKEN_RE = re.compile(r"\d+|[a-z]+")
# Words that mark a pre-release: 1.0-rc1 comes before 1.0. A single letter is
# not one of them, because 1.1.1a (OpenSSL) comes after 1.1.1.
_PRE_RELEASE = {"dev": 0, "snapshot": 0, "alpha": 1, "beta": 2, "pre": 3, "preview": 3, "rc": 4}
_PRE, _END, _WORD, _NUMBER = 0, 1, 2, 3


@functools.lru_cache(maxsize=65536)
def _generic_key(version: str) -> tuple[tuple[int, int, str], ...]:
    text = version.strip().lower()
    if len(text) > 1 and text[0] == "v" and text[1].isdigit():
        text = text[1:]
    tokens: list[tuple[int, int, str]] = []
    for token in _TOKEN_RE.findall(text):
        if token.isdigit():
            tokens.append((_NUMBER, int(token), ""))
        elif token in _PRE_RELEASE:
            tokens.append((_PRE, _PRE_RELEASE[token], ""))
        else:
            tokens.append((_WORD, 0, token))
    # 1.0 and 1.0.0 are the same version, and so are 1.0-rc1 and 1.0.0-rc1:
    # trailing zeros of the leading numeric run do not count.
    run = 0
    while run < len(tokens) and tokens[run][0] == _NUMBER:
        run += 1
    while run > 1 and tokens[run - 1] == (_NUMBER, 0, ""):
        run -= 1
        del tokens[run]
    tokens.append((_END, 0, ""))
    return tuple(tokens)


# --------------------------------------------------------------------- dpkg
# Kept rather than univers' DebianVersion: both follow dpkg's verrevcmp and
# agree on the tests' pairs, and this one took 17 us a comparison against 28 us.
def _dpkg_split(version: str) -> tuple[int, str, str]:
    text = version.strip()
    epoch = 0
    head, colon, rest = text.partition(":")
    if colon and head.isdigit():
        epoch, text = int(head), rest
    upstream, dash, revision = text.rpartition("-")
    if not dash:
        upstream, revision = text, ""
    return epoch, upstream, revision


def _dpkg_order(ch: str) -> int:
    if ch.isascii() and ch.isalpha():
        return ord(ch)
    if ch == "~":
        return -1
    return ord(ch) + 256


def _verrevcmp(a: str, b: str) -> int:
    """dpkg's ``verrevcmp`` (lib/dpkg/version.c), character for character."""
    i = j = 0
    digits = "0123456789"
    while i < len(a) or j < len(b):
        # Non-digit prefixes: letters before other characters, '~' before the end.
        while (i < len(a) and a[i] not in digits) or (j < len(b) and b[j] not in digits):
            ac = _dpkg_order(a[i]) if i < len(a) and a[i] not in digits else 0
            bc = _dpkg_order(b[j]) if j < len(b) and b[j] not in digits else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        first_diff = 0
        while i < len(a) and a[i] in digits and j < len(b) and b[j] in digits:
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i] in digits:
            return 1
        if j < len(b) and b[j] in digits:
            return -1
        if first_diff:
            return first_diff
    return 0


def _dpkg_compare(a: str, b: str) -> int:
    epoch_a, upstream_a, revision_a = _dpkg_split(a)
    epoch_b, upstream_b, revision_b = _dpkg_split(b)
    if epoch_a != epoch_b:
        return epoch_a - epoch_b
    return _verrevcmp(upstream_a, upstream_b) or _verrevcmp(revision_a, revision_b)
