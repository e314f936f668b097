"""Advisories as the offline store holds them, whatever feed they came from.

OSV records become :class:`Advisory` objects with :class:`PackageRange` entries
(matched by package URL); NVD CVE records become advisories with
:class:`CpeRange` entries (matched by CPE); the CISA KEV catalog becomes
:class:`KevEntry` objects. These are plain values: parsing is in the importers
(:mod:`sbom._osv`, :mod:`sbom._nvd`, :mod:`sbom._kev`), matching in
:mod:`sbom.audit`, storage in :mod:`sbom.vulndb`.
"""

from __future__ import annotations

import dataclasses

__all__ = ["Advisory", "CpeRange", "KevEntry", "OsvRange", "PackageRange", "cvss_version"]


@dataclasses.dataclass(frozen=True)
class OsvRange:
    """One OSV ``affected[].ranges[]`` entry.

    Attributes:
        type: ``SEMVER``, ``ECOSYSTEM`` or ``GIT``.
        events: ``(kind, version)`` pairs in record order; kind is
            ``introduced``, ``fixed``, ``last_affected`` or ``limit``.
    """

    type: str
    events: tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class PackageRange:
    """The versions of one package an advisory affects (OSV ``affected[]``).

    Attributes:
        ecosystem: OSV ecosystem as written, e.g. ``Debian:11``; it decides
            how ``ECOSYSTEM`` ranges order versions.
        name: Package name as written.
        ranges: Version ranges.
        versions: Affected versions listed one by one.
    """

    ecosystem: str
    name: str
    ranges: tuple[OsvRange, ...] = ()
    versions: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class CpeRange:
    """One vulnerable NVD ``cpeMatch`` entry.

    Attributes:
        part: CPE part (``a``, ``o``, ``h``) or ``*``.
        vendor: CPE vendor, lower case.
        product: CPE product, lower case.
        version: The criteria's version: an exact version, or ``*`` when the
            bounds below (or none, meaning every version) apply.
        update: The criteria's update field, ``*`` or ``-`` when any.
        start_including: ``versionStartIncluding``, or ``None``.
        start_excluding: ``versionStartExcluding``, or ``None``.
        end_including: ``versionEndIncluding``, or ``None``.
        end_excluding: ``versionEndExcluding``, or ``None``.
    """

    part: str
    vendor: str
    product: str
    version: str
    update: str = "*"
    start_including: str | None = None
    start_excluding: str | None = None
    end_including: str | None = None
    end_excluding: str | None = None


@dataclasses.dataclass(frozen=True)
class Advisory:
    """One advisory (OSV record or NVD CVE).

    Attributes:
        source: ``osv`` or ``nvd``.
        id: The record's id, e.g. ``GHSA-qppj-fm5r-hxr3`` or ``CVE-2018-25032``.
        aliases: Other ids of the same vulnerability (OSV ``aliases``).
        upstream: Ids of the vulnerability this advisory is derived from (OSV
            ``upstream``): a Debian or Ubuntu record names its CVE there.
        summary: One line (or the first description), may be empty.
        published: Publication time as the feed writes it, or ``None``.
        modified: Last modification time as the feed writes it, or ``None``.
        cvss_score: CVSS base score, or ``None`` when the record has none.
        cvss_vector: CVSS vector string, or ``None``.
        severity: ``critical``, ``high``, ``medium``, ``low``, ``none`` or
            ``unknown``.
        packages: Affected packages (OSV).
        cpes: Affected CPEs (NVD).
        withdrawn: When an OSV record was withdrawn, or ``None``. A withdrawn
            record is never stored: importing it removes the stored one.
    """

    source: str
    id: str
    aliases: tuple[str, ...] = ()
    upstream: tuple[str, ...] = ()
    summary: str = ""
    published: str | None = None
    modified: str | None = None
    cvss_score: float | None = None
    cvss_vector: str | None = None
    severity: str = "unknown"
    packages: tuple[PackageRange, ...] = ()
    cpes: tuple[CpeRange, ...] = ()
    withdrawn: str | None = None

    @property
    def ids(self) -> tuple[str, ...]:
        """Every id of the vulnerability: the record's, its aliases and upstream ids."""
        return tuple(dict.fromkeys((self.id, *self.aliases, *self.upstream)))

    @property
    def cve_id(self) -> str | None:
        """The CVE id of the vulnerability: the record's id, a CVE alias or upstream id."""
        for candidate in self.ids:
            if candidate.startswith("CVE-"):
                return candidate
        return None

    @property
    def cvss_version(self) -> str | None:
        """The CVSS version of :attr:`cvss_vector` (``4.0``, ``3.1``, ``3.0``, ``2.0``)."""
        return cvss_version(self.cvss_vector)


def cvss_version(vector: str | None) -> str | None:
    """The CVSS version a vector string is written in, or ``None`` without a vector.

    CVSS 3.x and 4.0 vectors name their version (``CVSS:3.1/...``); a CVSS 2.0
    vector (``AV:N/AC:L/Au:N/...``) does not.
    """
    if not vector:
        return None
    if vector.startswith("CVSS:"):
        return vector[5:].partition("/")[0] or None
    return "2.0"


@dataclasses.dataclass(frozen=True)
class KevEntry:
    """One entry of CISA's Known Exploited Vulnerabilities catalog.

    Attributes:
        cve_id: The CVE id.
        vendor_project: ``vendorProject``.
        product: ``product``.
        name: ``vulnerabilityName``.
        date_added: ``dateAdded`` (YYYY-MM-DD).
        due_date: ``dueDate`` (YYYY-MM-DD), or ``None``.
        ransomware: ``knownRansomwareCampaignUse`` (``Known`` or ``Unknown``).
    """

    cve_id: str
    vendor_project: str
    product: str
    name: str
    date_added: str
    due_date: str | None = None
    ransomware: str = "Unknown"
