"""Whether an advisory's version range covers a version: OSV ranges and NVD bounds.

Pure functions of the advisory entry and the version, used by :mod:`sbom.audit`.
"""

from __future__ import annotations

import functools

from sbom.advisory import CpeRange, OsvRange, PackageRange
from sbom.versions import Scheme, UnorderableVersionError, compare, scheme_for_ecosystem

__all__ = ["cpe_affects", "osv_affects"]


def osv_affects(version: str, package: PackageRange) -> bool:
    """Whether an OSV ``affected`` entry covers ``version``.

    The version is affected if it is listed in ``versions``, or lies in a
    ``SEMVER`` or ``ECOSYSTEM`` range evaluated as the OSV schema says: events
    sorted by version, ``introduced`` opens, ``fixed`` closes (exclusive),
    ``last_affected`` closes (inclusive), ``limit`` caps. ``GIT`` ranges need
    the repository and never match here.

    Raises:
        UnorderableVersionError: No range covers ``version`` for certain, and
            one could not be evaluated: its ecosystem has no ordering pumpguard
            knows, or ``version`` or one of its events is not a version of that
            ordering. The entry must then be reported as not checked, never
            taken as "not affected".
    """
    if version in package.versions:
        return True
    unorderable: UnorderableVersionError | None = None
    for osv_range in package.ranges:
        if osv_range.type == "GIT":
            continue
        scheme = (
            Scheme.SEMVER if osv_range.type == "SEMVER" else scheme_for_ecosystem(package.ecosystem)
        )
        try:
            if scheme is None:
                raise UnorderableVersionError(
                    f"pumpguard cannot order {package.ecosystem} versions"
                )
            if _in_osv_range(version, osv_range, scheme):
                return True
        except UnorderableVersionError as error:
            unorderable = unorderable or error
    if unorderable is not None:
        raise unorderable
    return False


def _in_osv_range(version: str, osv_range: OsvRange, scheme: Scheme) -> bool:
    def order(a: tuple[str, str], b: tuple[str, str]) -> int:
        # "introduced 0" is before every version.
        if a[1] == "0" and a[0] == "introduced":
            return -1 if b != a else 0
        if b[1] == "0" and b[0] == "introduced":
            return 1
        return compare(a[1], b[1], scheme)

    limits = [v for kind, v in osv_range.events if kind == "limit" and v != "*"]
    if limits and not any(compare(version, limit, scheme) < 0 for limit in limits):
        return False
    affected = False
    for kind, bound in sorted(osv_range.events, key=functools.cmp_to_key(order)):
        if kind == "introduced":
            if bound == "0" or compare(version, bound, scheme) >= 0:
                affected = True
        elif kind == "fixed":
            if compare(version, bound, scheme) >= 0:
                affected = False
        elif kind == "last_affected" and compare(version, bound, scheme) > 0:
            affected = False
    return affected


def cpe_affects(version: str, update: str, cpe_range: CpeRange) -> bool:
    """Whether an NVD ``cpeMatch`` entry covers a version of its product.

    An exact version in the criteria must equal ``version``; ``*`` with bounds
    needs ``version`` inside all of them; ``*`` without bounds covers every
    version. A specific ``update`` in the criteria must equal the component's.
    """
    if cpe_range.update not in ("*", "-") and update not in ("*", cpe_range.update):
        return False
    generic = Scheme.GENERIC
    if cpe_range.version not in ("*", "-", ""):
        return compare(version, cpe_range.version, generic) == 0
    if cpe_range.version == "-":
        return False

    def outside(bound: str | None, allowed: tuple[int, ...]) -> bool:
        if bound is None:
            return False
        c = compare(version, bound, generic)
        return (c > 0) - (c < 0) not in allowed

    return not (
        outside(cpe_range.start_including, (0, 1))
        or outside(cpe_range.start_excluding, (1,))
        or outside(cpe_range.end_including, (-1, 0))
        or outside(cpe_range.end_excluding, (-1,))
    )
