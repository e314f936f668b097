"""Package URLs to the (ecosystem, name) keys advisories are indexed by.

OSV names an affected package by ecosystem and name (``PyPI``/``urllib3``,
``Debian:11``/``zlib``, ``Maven``/``org.apache.logging.log4j:log4j-core``); an
SBOM names it by package URL. Both are reduced to the same key: the ecosystem
in lower case without a release suffix, and the name as the ecosystem spells it
(PyPI names normalised as PEP 503 says, the others in lower case).

The release an OSV ecosystem carries (``Debian:11``, ``Ubuntu:22.04:LTS``,
``Alpine:v3.18``) is not part of the key: it is compared separately, with the
release a distribution package URL states in its ``distro`` qualifier
(``distro=debian-11``, ``distro=bookworm``, ``distro=alpine-3.18.4``), because a
fix is published per release.

Only purl types (and, for distribution packages, namespaces) that map to an OSV
ecosystem are *covered*: a ``pkg:github``, ``pkg:generic`` or ``pkg:rpm`` purl
names nothing an OSV record can name, and a component identified by it alone
is not checked.
"""

from __future__ import annotations

import dataclasses
import re

from packageurl import PackageURL

__all__ = ["PurlKeys", "ecosystem_release", "package_key", "purl_keys"]

# purl type -> OSV ecosystem (lower case). Types whose namespace is the
# distribution (deb, apk) take the namespace instead. Types not listed here
# (github, generic, rpm, ...) are not covered by any OSV ecosystem.
_TYPE_ECOSYSTEMS = {
    "pypi": "pypi",
    "npm": "npm",
    "maven": "maven",
    "golang": "go",
    "cargo": "crates.io",
    "gem": "rubygems",
    "nuget": "nuget",
    "composer": "packagist",
    "hex": "hex",
    "pub": "pub",
    "swift": "swifturl",
    "hackage": "hackage",
    "cran": "cran",
    "conan": "conancenter",
}
# Distribution purl types: the namespaces (distributions) OSV has an
# ecosystem for. rpm is not covered: OSV's RPM ecosystems ("Red Hat", "Rocky
# Linux", ...) need rpm version ordering and release names pumpguard lacks.
_DISTRO_TYPES = {"deb": ("debian", "ubuntu"), "apk": ("alpine", "wolfi", "chainguard")}
# Types whose namespace is part of the OSV package name, and how it is joined.
_NAMESPACE_JOIN = {"maven": ":", "golang": "/", "npm": "/", "composer": "/", "swift": "/"}

# Release code names a distro qualifier may use instead of the number.
_CODENAMES = {
    "debian": {
        "wheezy": "7",
        "jessie": "8",
        "stretch": "9",
        "buster": "10",
        "bullseye": "11",
        "bookworm": "12",
        "trixie": "13",
        "forky": "14",
    },
    "ubuntu": {
        "trusty": "14.04",
        "xenial": "16.04",
        "bionic": "18.04",
        "focal": "20.04",
        "jammy": "22.04",
        "lunar": "23.04",
        "mantic": "23.10",
        "noble": "24.04",
        "oracular": "24.10",
        "plucky": "25.04",
    },
}
# How much of a release number names the release OSV publishes fixes for:
# Debian 11.6 is Debian 11, Alpine 3.18.4 is Alpine v3.18, Ubuntu 22.04 is 22.04.
_RELEASE_PARTS = {"debian": 1, "ubuntu": 2, "alpine": 2}
_RELEASE_RE = re.compile(r"v?(\d+(?:\.\d+)*)")


def package_key(ecosystem: str, name: str) -> tuple[str, str]:
    """The index key of an OSV ``affected.package``.

    Args:
        ecosystem: OSV ecosystem, e.g. ``PyPI`` or ``Debian:11``.
        name: Package name as OSV spells it.

    Returns:
        ``(ecosystem, name)`` normalised for lookup.
    """
    base = ecosystem.split(":", 1)[0].strip().lower()
    if base == "pypi":
        return base, re.sub(r"[-_.]+", "-", name).lower()
    return base, name.strip().lower()


def _release_number(family: str, text: str) -> str | None:
    """``11.6`` -> ``11`` (Debian), ``v3.18.4`` -> ``3.18`` (Alpine); ``None`` if not a number."""
    match = _RELEASE_RE.fullmatch(text.strip().lower())
    if match is None:
        return None
    parts = match.group(1).split(".")
    keep = _RELEASE_PARTS.get(family)
    if keep is not None:
        if len(parts) < keep:
            return None
        parts = parts[:keep]
    return ".".join(str(int(p)) if family != "ubuntu" else p for p in parts)


def ecosystem_release(ecosystem: str) -> str | None:
    """The release an OSV ecosystem names, normalised, or ``None`` if it names none.

    ``Debian:11`` -> ``11``, ``Ubuntu:22.04:LTS`` and ``Ubuntu:Pro:22.04:LTS``
    -> ``22.04``, ``Alpine:v3.18`` -> ``3.18``; ``PyPI`` -> ``None``.
    """
    base, _, rest = ecosystem.partition(":")
    if not rest:
        return None
    family = base.strip().lower()
    for part in rest.split(":"):
        release = _release_number(family, part)
        if release is not None:
            return release
    return None


def _distro_release(family: str, distro: str) -> str | None:
    """The release a purl ``distro`` qualifier names, normalised like :func:`ecosystem_release`.

    Accepts ``debian-11``, ``debian-11.6``, ``11``, ``bullseye``,
    ``ubuntu-22.04``, ``jammy``, ``alpine-3.18.4``, ``3.18``. A qualifier
    naming another distribution, or no release, gives ``None``.
    """
    text = distro.strip().lower()
    name, dash, rest = text.partition("-")
    if dash and not name[:1].isdigit():
        if name != family:
            return None
        text = rest
    codename = _CODENAMES.get(family, {}).get(text)
    if codename is not None:
        return codename
    return _release_number(family, text)


@dataclasses.dataclass(frozen=True)
class PurlKeys:
    """What a component's package URL is looked up by.

    Attributes:
        keys: ``(ecosystem, name)`` index keys; more than one when the binary
            package is built from a source package of another name (the
            ``upstream`` qualifier of a ``deb`` purl), which is what Debian
            advisories name.
        version: The purl's version, or ``None``.
        uncovered: Why no advisory source covers the purl (its type, or its
            distribution, has no OSV ecosystem), or ``None`` when one does.
        release: For a distribution package, the release its ``distro``
            qualifier names (normalised as :func:`ecosystem_release` does),
            or ``None`` when it names none.
        distro: For a distribution package, the distribution (``debian``),
            else ``None``.
        distro_qualifier: The ``distro`` qualifier as written, or ``None``.
    """

    keys: tuple[tuple[str, str], ...]
    version: str | None
    uncovered: str | None = None
    release: str | None = None
    distro: str | None = None
    distro_qualifier: str | None = None


def purl_keys(purl: str) -> PurlKeys | None:
    """The lookup keys of a package URL, or ``None`` if it does not parse."""
    try:
        parsed = PackageURL.from_string(purl)
    except ValueError:
        return None
    kind = parsed.type.lower()
    namespace = parsed.namespace or ""
    qualifiers = parsed.qualifiers if isinstance(parsed.qualifiers, dict) else {}
    uncovered: str | None = None
    release: str | None = None
    distro: str | None = None
    if kind in _DISTRO_TYPES:
        # Without a namespace, the type's first distribution (deb: debian).
        ecosystem = distro = namespace.lower() or _DISTRO_TYPES[kind][0]
        if ecosystem not in _DISTRO_TYPES[kind]:
            uncovered = (
                f"purl type {kind} with namespace {namespace} is not covered by "
                f"the advisory sources (they cover {', '.join(_DISTRO_TYPES[kind])})"
            )
        names = [parsed.name]
        upstream = qualifiers.get("upstream")
        if upstream:
            # syft writes "upstream=openssl" or "upstream=openssl@1.1.1n-0".
            source = upstream.partition("@")[0].strip()
            if source and source != parsed.name:
                names.append(source)
        if qualifiers.get("distro"):
            release = _distro_release(ecosystem, qualifiers["distro"])
    else:
        ecosystem = _TYPE_ECOSYSTEMS.get(kind, kind)
        if kind not in _TYPE_ECOSYSTEMS:
            uncovered = f"purl type {kind} is not covered by the advisory sources"
        join = _NAMESPACE_JOIN.get(kind)
        names = [f"{namespace}{join}{parsed.name}" if namespace and join else parsed.name]
    keys = tuple(dict.fromkeys(package_key(ecosystem, n) for n in names))
    return PurlKeys(
        keys=keys,
        version=parsed.version,
        uncovered=uncovered,
        release=release,
        distro=distro,
        distro_qualifier=qualifiers.get("distro") or None,
    )
