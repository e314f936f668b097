"""The TOML component manifest the firmware team writes (docs/sbom-manifest.md).

A manifest lists the third-party and in-house components built into a firmware
image as ``[[component]]`` tables, and may name the firmware's own supplier and
manufacturer in top-level ``[supplier]`` and ``[manufacturer]`` tables. This
module parses and validates it; it never fills in a fact the manifest does not
state (a missing supplier stays absent, a missing support level is ``unknown``).
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packageurl import PackageURL

from sbom.errors import ComponentManifestError, SbomError, SbomInputError
from sbom.properties import SUPPORT_LEVELS, UNKNOWN

__all__ = [
    "COMPONENT_TYPES",
    "HASH_ALGORITHMS",
    "ComponentManifest",
    "ComponentSpec",
    "OrganizationSpec",
    "component_from_fields",
    "load_component_manifest",
    "load_manifest",
]

#: CycloneDX 1.6 component types a manifest may use.
COMPONENT_TYPES = (
    "application",
    "container",
    "cryptographic-asset",
    "data",
    "device",
    "device-driver",
    "file",
    "firmware",
    "framework",
    "library",
    "machine-learning-model",
    "operating-system",
    "platform",
)

#: Hash algorithm keys a manifest may use -> (CycloneDX name, hex digits).
HASH_ALGORITHMS: Mapping[str, tuple[str, int]] = {
    "md5": ("MD5", 32),
    "sha1": ("SHA-1", 40),
    "sha256": ("SHA-256", 64),
    "sha384": ("SHA-384", 96),
    "sha512": ("SHA-512", 128),
    "sha3-256": ("SHA3-256", 64),
    "sha3-384": ("SHA3-384", 96),
    "sha3-512": ("SHA3-512", 128),
    "blake2b-256": ("BLAKE2b-256", 64),
    "blake2b-384": ("BLAKE2b-384", 96),
    "blake2b-512": ("BLAKE2b-512", 128),
    "blake3": ("BLAKE3", 64),
}
# CycloneDX spellings ("SHA-256") and hashlib ones ("sha3_256") are accepted too.
_HASH_ALIASES = {
    **{key: key for key in HASH_ALGORITHMS},
    **{cdx.lower(): key for key, (cdx, _) in HASH_ALGORITHMS.items()},
    **{key.replace("-", "_"): key for key in HASH_ALGORITHMS},
}

_COMPONENT_KEYS = frozenset(
    {
        "name",
        "version",
        "type",
        "supplier",
        "purl",
        "cpe",
        "licenses",
        "hashes",
        "support_level",
        "end_of_support",
        "depends_on",
        "description",
    }
)
_TOP_LEVEL_KEYS = frozenset({"component", "supplier", "manufacturer"})
_ORGANIZATION_KEYS = frozenset({"name", "url"})

_HEX_RE = re.compile(r"^[0-9a-fA-F]+$")
_LICENSE_REF_RE = re.compile(r"(?:DocumentRef-[A-Za-z0-9.-]+:)?LicenseRef-[A-Za-z0-9.-]+")
# CPE 2.3 formatted string: "cpe:2.3:" then 11 colon-separated, backslash-escaped parts.
_CPE23_RE = re.compile(r"^cpe:2\.3:[aho*-](?::(?:[^:\\\s]|\\.)+){10}$")
_CPE22_RE = re.compile(r"^cpe:/[aho]?(?::[^:\s]*){0,6}$", re.IGNORECASE)
_ISO_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclasses.dataclass(frozen=True)
class OrganizationSpec:
    """An organisation named in a manifest (a supplier or manufacturer).

    Attributes:
        name: The organisation's name.
        url: Its web address, if the manifest gives one.
    """

    name: str
    url: str | None = None


@dataclasses.dataclass(frozen=True)
class ComponentSpec:
    """One validated ``[[component]]`` of a manifest.

    Attributes:
        name: Component name.
        version: Component version, as the supplier spells it.
        type: CycloneDX component type (one of :data:`COMPONENT_TYPES`).
        supplier: Name of the supplying organisation, or ``None`` if unknown.
        purl: Canonical package URL, or ``None``.
        cpe: CPE 2.2 or 2.3 name, or ``None``.
        licenses: SPDX license ids, or a single SPDX expression.
        hashes: ``(CycloneDX algorithm, lower-case hex)`` pairs.
        support_level: One of :data:`sbom.properties.SUPPORT_LEVELS`.
        end_of_support: End-of-support date, or ``None`` if unknown.
        depends_on: bom-refs of the components this one depends on.
        description: Free text, or ``None``.
        properties: Further ``(name, value)`` CycloneDX properties, e.g. the
            Yocto recipe a package was built from (other inputs than the
            manifest set them; the manifest cannot).
    """

    name: str
    version: str
    type: str = "library"
    supplier: str | None = None
    purl: str | None = None
    cpe: str | None = None
    licenses: tuple[str, ...] = ()
    hashes: tuple[tuple[str, str], ...] = ()
    support_level: str = UNKNOWN
    end_of_support: datetime.date | None = None
    depends_on: tuple[str, ...] = ()
    description: str | None = None
    properties: tuple[tuple[str, str], ...] = ()

    @property
    def bom_ref(self) -> str:
        """The component's bom-ref in a generated SBOM, ``component:NAME@VERSION``."""
        return f"component:{self.name}@{self.version}"


@dataclasses.dataclass(frozen=True)
class ComponentManifest:
    """A whole validated manifest.

    Attributes:
        path: The file it was read from.
        components: Its components, in manifest order.
        supplier: The firmware's supplier, if the manifest names one.
        manufacturer: The firmware's manufacturer, if the manifest names one.
    """

    path: Path
    components: tuple[ComponentSpec, ...]
    supplier: OrganizationSpec | None = None
    manufacturer: OrganizationSpec | None = None


class _Where:
    """Builds error messages that name the file, the component and the field."""

    def __init__(
        self,
        path: Path,
        index: int | None = None,
        name: object = None,
        label: str | None = None,
        error: type[SbomError] = ComponentManifestError,
    ) -> None:
        self.path = path
        self.index = index
        self.name = name
        self.label = label
        self.kind = error

    def error(self, field: str | None, problem: str) -> SbomError:
        where = str(self.path)
        if self.label is not None:
            where += f": {self.label}"
        elif self.index is not None:
            where += f": [[component]] #{self.index}"
        named = isinstance(self.name, str) and self.name
        if (self.index is not None or self.label is not None) and named:
            where += f" ({self.name!r})"
        if field is not None:
            where += f": field {field!r}"
        return self.kind(f"{where}: {problem}")


def load_manifest(path: Path) -> ComponentManifest:
    """Read and validate a TOML component manifest.

    Args:
        path: The manifest file.

    Returns:
        The validated manifest, with every ``depends_on`` resolved to bom-refs.

    Raises:
        ComponentManifestError: The file cannot be read, is not TOML, or breaks
            a rule of docs/sbom-manifest.md; the message names the file, the
            component and the field.
    """
    top = _Where(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise top.error(None, f"cannot read the manifest ({e.strerror or e})") from e
    except tomllib.TOMLDecodeError as e:
        raise top.error(None, f"not valid TOML: {e}") from e
    except UnicodeDecodeError as e:
        raise top.error(None, "not valid TOML: the file is not UTF-8") from e

    _reject_unknown_keys(data, _TOP_LEVEL_KEYS, top, None)
    raw_components = data.get("component", [])
    if not isinstance(raw_components, list) or not all(isinstance(c, dict) for c in raw_components):
        raise top.error("component", "must be an array of tables, written [[component]]")

    parsed = [
        _parse_component(raw, _Where(path, i, raw.get("name")))
        for i, raw in enumerate(raw_components, start=1)
    ]
    seen: dict[tuple[str, str], int] = {}
    for i, (spec, _) in enumerate(parsed, start=1):
        key = (spec.name, spec.version)
        if key in seen:
            raise _Where(path, i, spec.name).error(
                None,
                f"duplicate component {spec.name} {spec.version} "
                f"(already [[component]] #{seen[key]})",
            )
        seen[key] = i

    specs = [spec for spec, _ in parsed]
    components = tuple(
        _resolve_depends_on(spec, names, specs, _Where(path, i, spec.name))
        for i, (spec, names) in enumerate(parsed, start=1)
    )
    return ComponentManifest(
        path=path,
        components=components,
        supplier=_parse_organization(data, "supplier", top),
        manufacturer=_parse_organization(data, "manufacturer", top),
    )


def component_from_fields(
    fields: Mapping[str, Any],
    path: Path,
    label: str,
    properties: tuple[tuple[str, str], ...] = (),
) -> ComponentSpec:
    """Validate a component another input describes, by the manifest's rules.

    Yocto manifests, dpkg status files and merged SBOMs describe components
    too; their facts are put in a manifest-shaped table so that the same rules
    apply (canonical purl, CPE syntax, SPDX licenses, hash lengths, dates).

    Args:
        fields: Manifest keys (``name``, ``version``, ``purl`` ...), without
            ``depends_on``.
        path: The input file, for messages.
        label: Where in the file, for messages (e.g. ``line 12``).
        properties: Further CycloneDX properties for the component.

    Returns:
        The validated component.

    Raises:
        SbomInputError: A field breaks a rule; the message names the file,
            ``label``, the component and the field.
    """
    where = _Where(path, None, fields.get("name"), label=label, error=SbomInputError)
    spec, _ = _parse_component(fields, where)
    if properties:
        spec = dataclasses.replace(spec, properties=properties)
    return spec


def load_component_manifest(path: Path) -> list[ComponentSpec]:
    """Read and validate the components of a TOML component manifest.

    Args:
        path: The manifest file.

    Returns:
        The components in manifest order, with ``depends_on`` resolved to
        bom-refs.

    Raises:
        ComponentManifestError: As :func:`load_manifest`.
    """
    return list(load_manifest(path).components)


def _reject_unknown_keys(
    table: Mapping[str, Any], allowed: frozenset[str], where: _Where, prefix: str | None
) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        place = f" in [{prefix}]" if prefix else ""
        raise where.error(
            None,
            f"unknown key(s) {names}{place}; allowed: {', '.join(sorted(allowed))}",
        )


def _string(
    table: Mapping[str, Any],
    key: str,
    where: _Where,
    *,
    required: bool,
    prefix: str = "",
    multiline: bool = False,
) -> str | None:
    field = f"{prefix}.{key}" if prefix else key
    if key not in table:
        if required:
            raise where.error(field, "is required")
        return None
    value = table[key]
    if not isinstance(value, str):
        hint = (
            " (quote it)" if isinstance(value, int | float) and not isinstance(value, bool) else ""
        )
        raise where.error(field, f"must be a string, not {_toml_type(value)}{hint}")
    if not value.strip():
        raise where.error(field, "must not be empty")
    if value != value.strip():
        raise where.error(field, "must not start or end with white space")
    if not multiline and "\n" in value:
        raise where.error(field, "must be one line")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value if ch not in "\n\t"):
        raise where.error(field, "must not contain control characters")
    return value


def _string_list(table: Mapping[str, Any], key: str, where: _Where) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise where.error(key, "must be a list of non-empty strings")
    return list(value)


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, datetime.date | datetime.time):
        return "a date or time"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _parse_component(raw: Mapping[str, Any], where: _Where) -> tuple[ComponentSpec, list[str]]:
    _reject_unknown_keys(raw, _COMPONENT_KEYS, where, None)
    name = _string(raw, "name", where, required=True)
    version = _string(raw, "version", where, required=True)
    if name is None or version is None:  # required=True raises first; for the type checker
        raise where.error("name", "a component needs a name and a version")

    type_ = _string(raw, "type", where, required=False) or "library"
    if type_ not in COMPONENT_TYPES:
        raise where.error(
            "type",
            f"{type_!r} is not a CycloneDX component type; one of {', '.join(COMPONENT_TYPES)}",
        )

    support_level = _string(raw, "support_level", where, required=False) or UNKNOWN
    if support_level not in SUPPORT_LEVELS:
        raise where.error(
            "support_level", f"{support_level!r} is not one of {', '.join(SUPPORT_LEVELS)}"
        )

    spec = ComponentSpec(
        name=name,
        version=version,
        type=type_,
        supplier=_string(raw, "supplier", where, required=False),
        purl=_parse_purl(raw, where),
        cpe=_parse_cpe(raw, where),
        licenses=_parse_licenses(raw, where),
        hashes=_parse_hashes(raw, where),
        support_level=support_level,
        end_of_support=_parse_end_of_support(raw, where),
        description=_string(raw, "description", where, required=False, multiline=True),
    )
    return spec, _string_list(raw, "depends_on", where)


def _parse_purl(raw: Mapping[str, Any], where: _Where) -> str | None:
    text = _string(raw, "purl", where, required=False)
    if text is None:
        return None
    try:
        purl = PackageURL.from_string(text)
    except ValueError as e:
        raise where.error("purl", f"{text!r} is not a valid package URL: {e}") from e
    canonical: str = purl.to_string()
    return canonical


def _parse_cpe(raw: Mapping[str, Any], where: _Where) -> str | None:
    text = _string(raw, "cpe", where, required=False)
    if text is None:
        return None
    if not (_CPE23_RE.fullmatch(text) or _CPE22_RE.fullmatch(text)):
        raise where.error(
            "cpe",
            f"{text!r} is not a CPE name (cpe:2.3:PART:VENDOR:PRODUCT:... with 13 parts, "
            "or cpe:/PART:VENDOR:PRODUCT:...)",
        )
    return text


def _parse_licenses(raw: Mapping[str, Any], where: _Where) -> tuple[str, ...]:
    # Imported here: the SPDX tables load when first needed, not on import.
    from cyclonedx.spdx import fixup_id, is_expression

    entries = _string_list(raw, "licenses", where)
    result: list[str] = []
    for entry in entries:
        spdx_id = fixup_id(entry)
        if spdx_id is not None or _LICENSE_REF_RE.fullmatch(entry):
            result.append(spdx_id or entry)
            continue
        # An expression may name LicenseRef-... licenses; check its structure with
        # those replaced by a known id, since the SPDX list cannot know them.
        if not is_expression(_LICENSE_REF_RE.sub("MIT", entry)):
            raise where.error(
                "licenses", f"{entry!r} is neither an SPDX license id nor an SPDX expression"
            )
        if len(entries) > 1:
            raise where.error(
                "licenses",
                f"the expression {entry!r} must be the only entry; "
                "combine licenses into one expression with AND / OR",
            )
        result.append(entry)
    if len(set(result)) != len(result):
        raise where.error("licenses", "lists a license more than once")
    return tuple(result)


def _parse_hashes(raw: Mapping[str, Any], where: _Where) -> tuple[tuple[str, str], ...]:
    table = raw.get("hashes", {})
    if not isinstance(table, dict):
        raise where.error("hashes", 'must be a table of algorithm = "hex", e.g. sha256 = "..."')
    result: dict[str, str] = {}
    for alg, value in table.items():
        key = _HASH_ALIASES.get(alg.lower())
        if key is None:
            raise where.error(
                f"hashes.{alg}",
                f"unknown hash algorithm; one of {', '.join(HASH_ALGORITHMS)}",
            )
        cdx_name, digits = HASH_ALGORITHMS[key]
        if not isinstance(value, str) or not _HEX_RE.fullmatch(value) or len(value) != digits:
            raise where.error(
                f"hashes.{alg}", f"must be {digits} hexadecimal digits for {cdx_name}"
            )
        if cdx_name in result:
            raise where.error(f"hashes.{alg}", f"gives a second {cdx_name} hash")
        result[cdx_name] = value.lower()
    return tuple(result.items())


def _parse_end_of_support(raw: Mapping[str, Any], where: _Where) -> datetime.date | None:
    if "end_of_support" not in raw:
        return None
    value = raw["end_of_support"]
    problem = 'must be a TOML date (2030-12-31) or "unknown"'
    # datetime is a date subclass; a timestamp is not what is asked for.
    if isinstance(value, datetime.datetime):
        raise where.error("end_of_support", f"{problem}, not a date and time")
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        if value == UNKNOWN:
            return None
        if _ISO_DATE_RE.fullmatch(value):
            try:
                return datetime.date.fromisoformat(value)
            except ValueError as e:
                raise where.error("end_of_support", f"{value!r} is not a real date") from e
        raise where.error("end_of_support", f"{problem}, not {value!r}")
    raise where.error("end_of_support", f"{problem}, not {_toml_type(value)}")


def _resolve_depends_on(
    spec: ComponentSpec, names: list[str], specs: list[ComponentSpec], where: _Where
) -> ComponentSpec:
    refs: list[str] = []
    for name in names:
        target = _find_component(name, specs, where)
        if target is spec:
            raise where.error("depends_on", f"{name!r} is the component itself")
        if target.bom_ref in refs:
            raise where.error("depends_on", f"names {name!r} more than once")
        refs.append(target.bom_ref)
    if not refs:
        return spec
    return dataclasses.replace(spec, depends_on=tuple(refs))


def _find_component(name: str, specs: list[ComponentSpec], where: _Where) -> ComponentSpec:
    by_name = [s for s in specs if s.name == name]
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        versions = ", ".join(f"{name}@{s.version}" for s in by_name)
        raise where.error(
            "depends_on", f"{name!r} is ambiguous, several versions exist; write one of {versions}"
        )
    base, at, version = name.rpartition("@")
    if at:
        for s in specs:
            if s.name == base and s.version == version:
                return s
    raise where.error("depends_on", f"{name!r} is not a component of this manifest")


def _parse_organization(
    data: Mapping[str, Any], key: str, where: _Where
) -> OrganizationSpec | None:
    if key not in data:
        return None
    table = data[key]
    if not isinstance(table, dict):
        raise where.error(key, f"must be a table, written [{key}] with name and url")
    _reject_unknown_keys(table, _ORGANIZATION_KEYS, where, key)
    name = _string(table, "name", where, required=True, prefix=key)
    if name is None:  # required=True raises first; for the type checker
        raise where.error(f"{key}.name", "is required")
    url = _string(table, "url", where, required=False, prefix=key)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or " " in url:
            raise where.error(f"{key}.url", f"{url!r} is not an http(s) URL")
    return OrganizationSpec(name=name, url=url)
