"""Typed access to the version classes of ``univers``, the ecosystems it orders for pumpguard.

``univers`` (aboutcode.org) ports each ecosystem's own comparison: Maven's
ComparableVersion, RubyGems' Gem::Version, Gentoo's vercmp as Alpine's apk
orders versions, NuGet's SemanticVersion. pumpguard's hand-written generic
order got many of those wrong (``2.17.0-m1`` after ``2.17.0``, ``1.0.a``
after ``1.0``, ``1.2.3_p1-r0`` before ``1.2.3-r1``).

Measured against the ecosystems' own test vectors (Maven's
ComparableVersionTest, RubyGems' test_gem_version.rb, apk-tools'
test/version.data), univers agrees on every ordered pair it accepts. Known
gaps, listed so that nobody relies on them:

* Maven: univers keeps ``1a`` and ``1.a`` apart (Maven's current
  ComparableVersionTest makes them equal), and it lacks Maven's ``release``
  alias of the release qualifier (``5.2.19.RELEASE`` would sort after
  ``5.2.19``, a false negative against ``last_affected 5.2.19``): the
  qualifier is rewritten to ``ga``, an alias univers knows, before parsing.
* apk: univers refuses versions with a leading zero (``006``), and the
  ``_cvs``, ``_svn``, ``_git`` and ``_hg`` suffixes and ``~hash`` parts that
  apk accepts; such versions are unorderable here, never guessed.

Only ``<`` and ``>`` of univers' versions are used: some of its classes
(GentooVersion, AlpineLinuxVersion) define ``<`` and ``>`` by the ecosystem's
comparison but inherit ``<=`` and ``>=`` from a plain string comparison.
"""

from __future__ import annotations

import enum
import functools
import re
from typing import Protocol

from univers import versions as _uv

__all__ = ["UniversScheme", "compare", "parse"]


class _Ordered(Protocol):
    def __lt__(self, other: object, /) -> bool: ...

    def __gt__(self, other: object, /) -> bool: ...


class UniversScheme(enum.Enum):
    """The univers version class of each ecosystem pumpguard orders through it."""

    MAVEN = "MavenVersion"
    RUBYGEMS = "RubygemsVersion"
    APK = "AlpineLinuxVersion"
    NUGET = "NugetVersion"


# Maven's ComparableVersion aliases "release" to "" as it does "ga" and
# "final"; a qualifier is a run of letters (digits and separators end it).
_MAVEN_RELEASE = re.compile(r"(?<![a-z])release(?![a-z])", re.IGNORECASE)


@functools.lru_cache(maxsize=65536)
def parse(version: str, scheme: UniversScheme) -> _Ordered | None:
    """A version as univers parses it, or ``None`` if univers refuses it.

    Args:
        version: The version string.
        scheme: Which univers class parses it.

    Returns:
        An object ordered by ``<`` and ``>`` against others of the same scheme.
    """
    if not version.strip():
        return None
    if scheme is UniversScheme.MAVEN:
        version = _MAVEN_RELEASE.sub("ga", version)
    cls = getattr(_uv, scheme.value)
    try:
        parsed: _Ordered = cls(version)
    # univers raises its own InvalidVersion, but some of its parsers fail with
    # ValueError, TypeError or IndexError on odd input; each means "cannot order".
    except Exception:
        return None
    return parsed


def compare(a: str, b: str, scheme: UniversScheme) -> int | None:
    """Compare two versions with univers.

    Returns:
        Negative, zero or positive as ``a`` comes before, is, or comes after
        ``b``; ``None`` if univers cannot parse either.
    """
    va, vb = parse(a, scheme), parse(b, scheme)
    if va is None or vb is None:
        return None
    return int(va > vb) - int(va < vb)
