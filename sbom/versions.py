"""Version ordering per ecosystem, for matching components against advisories.

Advisories say which versions are affected as ranges ("introduced 1.2.0, fixed
1.2.12"), and whether a component's version lies in a range depends on how its
ecosystem orders versions: Debian puts ``1.0~rc1`` before ``1.0``, PyPI puts
``1.0rc1`` before ``1.0``, semantic versioning puts ``1.0.0-rc.1`` before
``1.0.0``, and OpenSSL's ``1.1.1k`` comes after ``1.1.1``. Each scheme here is
a pure function of two strings; nothing is looked up.

A version a scheme cannot parse is compared with the generic scheme, together
with the version it is compared to, so that a comparison always has an answer
and both sides are ordered by the same rules.
"""

from __future__ import annotations

import enum
import functools
import re
from typing import Any

from packaging.version import InvalidVersion, Version

__all__ = ["Scheme", "compare", "scheme_for_ecosystem"]


class Scheme(enum.Enum):
    """A way of ordering versions."""

    #: semver.org 2.0.0, leniently: a leading ``v`` and missing minor/patch are accepted.
    SEMVER = "semver"
    #: PEP 440, as PyPI orders versions (through :mod:`packaging`).
    PEP440 = "pep440"
    #: Debian's ``[epoch:]upstream[-revision]``, ordered as dpkg does.
    DPKG = "dpkg"
    #: Runs of digits compared as numbers, letters as text; for everything else.
    GENERIC = "generic"


# OSV ecosystem (lower case, without a ":release" suffix) -> ordering of its versions.
_ECOSYSTEM_SCHEMES = {
    "pypi": Scheme.PEP440,
    "debian": Scheme.DPKG,
    "ubuntu": Scheme.DPKG,
    "npm": Scheme.SEMVER,
    "crates.io": Scheme.SEMVER,
    "go": Scheme.SEMVER,
    "hex": Scheme.SEMVER,
    "pub": Scheme.SEMVER,
    "nuget": Scheme.SEMVER,
}


def scheme_for_ecosystem(ecosystem: str) -> Scheme:
    """The ordering an OSV ecosystem's ``ECOSYSTEM`` ranges use.

    Args:
        ecosystem: An OSV ecosystem name such as ``PyPI`` or ``Debian:12``.

    Returns:
        The scheme; :attr:`Scheme.GENERIC` for ecosystems without a known one.
    """
    base = ecosystem.split(":", 1)[0].strip().lower()
    return _ECOSYSTEM_SCHEMES.get(base, Scheme.GENERIC)


def compare(a: str, b: str, scheme: Scheme) -> int:
    """Compare two versions.

    Args:
        a: A version.
        b: Another version.
        scheme: How the ecosystem orders versions.

    Returns:
        A negative number if ``a`` comes before ``b``, zero if they are the
        same version, a positive number if ``a`` comes after ``b``.
    """
    if scheme is Scheme.DPKG:
        return _dpkg_compare(a, b)
    key_a = _key(a, scheme)
    key_b = _key(b, scheme)
    if key_a is None or key_b is None:
        key_a, key_b = _generic_key(a), _generic_key(b)
    return int(key_a > key_b) - int(key_a < key_b)


def _key(version: str, scheme: Scheme) -> Any:
    if scheme is Scheme.SEMVER:
        return _semver_key(version)
    if scheme is Scheme.PEP440:
        return _pep440_key(version)
    return _generic_key(version)


# ------------------------------------------------------------------ semver
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
