"""Package URLs to the (ecosystem, name) keys advisories are indexed by.

OSV names an affected package by ecosystem and name (``PyPI``/``urllib3``,
``Debian:11``/``zlib``, ``Maven``/``org.apache.logging.log4j:log4j-core``); an
SBOM names it by package URL. Both are reduced to the same key: the ecosystem
in lower case without a release suffix, and the name as the ecosystem spells it
(PyPI names normalised as PEP 503 says, the others in lower case).
"""

from __future__ import annotations

import dataclasses
import re

from packageurl import PackageURL

__all__ = ["PurlKeys", "package_key", "purl_keys"]

# purl type -> OSV ecosystem (lower case). Types whose namespace is the
# distribution (deb, apk, rpm) take the namespace instead.
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
    "cocoapods": "cocoapods",
    "hackage": "hackage",
    "cran": "cran",
    "conan": "conancenter",
}
_DISTRO_TYPES = {"deb": "debian", "apk": "alpine", "rpm": "redhat"}
# Types whose namespace is part of the OSV package name, and how it is joined.
_NAMESPACE_JOIN = {"maven": ":", "golang": "/", "npm": "/", "composer": "/", "github": "/"}


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


@dataclasses.dataclass(frozen=True)
class PurlKeys:
    """What a component's package URL is looked up by.

    Attributes:
        keys: ``(ecosystem, name)`` index keys; more than one when the binary
            package is built from a source package of another name (the
            ``upstream`` qualifier of a ``deb`` purl), which is what Debian
            advisories name.
        version: The purl's version, or ``None``.
    """

    keys: tuple[tuple[str, str], ...]
    version: str | None


def purl_keys(purl: str) -> PurlKeys | None:
    """The lookup keys of a package URL, or ``None`` if it does not parse."""
    try:
        parsed = PackageURL.from_string(purl)
    except ValueError:
        return None
    kind = parsed.type.lower()
    namespace = parsed.namespace or ""
    if kind in _DISTRO_TYPES:
        ecosystem = namespace.lower() or _DISTRO_TYPES[kind]
        names = [parsed.name]
        qualifiers = parsed.qualifiers if isinstance(parsed.qualifiers, dict) else {}
        upstream = qualifiers.get("upstream")
        if upstream:
            # syft writes "upstream=openssl" or "upstream=openssl@1.1.1n-0".
            source = upstream.partition("@")[0].strip()
            if source and source != parsed.name:
                names.append(source)
    else:
        ecosystem = _TYPE_ECOSYSTEMS.get(kind, kind)
        join = _NAMESPACE_JOIN.get(kind)
        names = [f"{namespace}{join}{parsed.name}" if namespace and join else parsed.name]
    keys = tuple(dict.fromkeys(package_key(ecosystem, n) for n in names))
    return PurlKeys(keys=keys, version=parsed.version)
