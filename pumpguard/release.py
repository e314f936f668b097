"""The release contract shared by every component (DESIGN.md, Release contract).

A release of product ``P``, version ``V`` is a set of TUF targets under ``P/V/``:
``firmware.img`` and ``sbom.cdx.json``. The firmware target's ``custom`` field
carries, under the single key ``pumpguard``, the :class:`ReleaseInfo` below.

This module only validates and converts; it does no I/O, so the signer, the
server and the pump agent all apply exactly the same rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import total_ordering
from typing import Any

from pumpguard.contract import (
    HARDWARE_ID_RE,
    MAX_COUNTER,
    PRODUCT_RE,
    RESERVED_ROLE_NAMES,
    SEMVER_RE,
    SHA256_RE,
    validate_hardware_id,
    validate_product,
)
from pumpguard.errors import ReleaseContractError

__all__ = [
    "CUSTOM_KEY",
    "FIRMWARE_NAME",
    "RESERVED_ROLE_NAMES",
    "SBOM_NAME",
    "ReleaseInfo",
    "SemVer",
    "firmware_path",
    "sbom_path",
    "split_target_path",
    "validate_hardware_id",
    "validate_product",
]

CUSTOM_KEY = "pumpguard"
FIRMWARE_NAME = "firmware.img"
SBOM_NAME = "sbom.cdx.json"
# The identifier rules are the wire contract's (pumpguard.contract), one
# definition for the signer, the server and the agent.
_PRODUCT_RE = PRODUCT_RE
_HARDWARE_ID_RE = HARDWARE_ID_RE
_SEMVER_RE = SEMVER_RE
_SHA256_RE = SHA256_RE
_MAX_COUNTER = MAX_COUNTER
_MAX_NOTES = 4096
_MAX_HARDWARE_IDS = 64


@total_ordering
@dataclass(frozen=True)
class SemVer:
    """A semantic version with semver 2.0.0 precedence.

    Build metadata is kept but ignored for ordering, as the specification says.
    """

    major: int
    minor: int
    patch: int
    prerelease: tuple[int | str, ...] = ()
    build: str = ""

    @classmethod
    def parse(cls, text: object) -> SemVer:
        """Parse ``text`` as a semantic version.

        Raises:
            ReleaseContractError: ``text`` is not a semantic version.
        """
        if not isinstance(text, str):
            raise ReleaseContractError(f"version {text!r} must be a string")
        m = _SEMVER_RE.fullmatch(text)
        if m is None:
            raise ReleaseContractError(
                f"version {text!r} is not a semantic version (MAJOR.MINOR.PATCH)"
            )
        pre: tuple[int | str, ...] = ()
        if m.group(4):
            pre = tuple(int(p) if p.isdigit() else p for p in m.group(4).split("."))
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)), pre, m.group(5) or "")

    def _key(self) -> tuple[Any, ...]:
        # A release sorts after all of its pre-releases; numeric identifiers sort
        # before alphanumeric ones (semver 2.0.0, section 11).
        pre = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(str(p) for p in self.prerelease)
        if self.build:
            text += "+" + self.build
        return text


def firmware_path(product: str, version: str) -> str:
    """TUF target path of a release's firmware image."""
    return f"{product}/{version}/{FIRMWARE_NAME}"


def sbom_path(product: str, version: str) -> str:
    """TUF target path of a release's CycloneDX SBOM."""
    return f"{product}/{version}/{SBOM_NAME}"


def split_target_path(path: str) -> tuple[str, str, str]:
    """Split ``P/V/name`` into its product, version and file name.

    Raises:
        ReleaseContractError: ``path`` is not of that shape.
    """
    parts = path.split("/")
    if len(parts) != 3 or not all(parts):
        raise ReleaseContractError(f"target path {path!r} is not PRODUCT/VERSION/FILE")
    return parts[0], parts[1], parts[2]


def _require(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in data:
        raise ReleaseContractError(f"release metadata lacks {name!r}")
    value = data[name]
    # bool is an int subclass; a counter of True is never meant.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ReleaseContractError(f"release metadata field {name!r} has the wrong type")
    return value


@dataclass(frozen=True)
class ReleaseInfo:
    """The ``pumpguard`` custom field of a firmware target.

    Attributes:
        product: Product line, also the name of its delegated TUF role.
        version: Semantic version of the release.
        release_counter: Anti-rollback counter, greater than that of every
            earlier release of the product; kept apart from TUF's own versions.
        hardware_ids: Pump hardware revisions the firmware may run on.
        sbom_sha256: sha256 of the release's SBOM target.
        notes: Release notes for operators.
    """

    product: str
    version: str
    release_counter: int
    hardware_ids: tuple[str, ...]
    sbom_sha256: str
    notes: str = ""
    semver: SemVer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_product(self.product)
        object.__setattr__(self, "semver", SemVer.parse(self.version))
        if (
            isinstance(self.release_counter, bool)
            or not isinstance(self.release_counter, int)
            or not 1 <= self.release_counter <= _MAX_COUNTER
        ):
            raise ReleaseContractError(
                f"release_counter {self.release_counter!r} must be an integer >= 1"
            )
        if not self.hardware_ids:
            raise ReleaseContractError("a release needs at least one hardware id")
        if len(self.hardware_ids) > _MAX_HARDWARE_IDS:
            raise ReleaseContractError(f"at most {_MAX_HARDWARE_IDS} hardware ids")
        for hardware_id in self.hardware_ids:
            validate_hardware_id(hardware_id)
        if len(set(self.hardware_ids)) != len(self.hardware_ids):
            raise ReleaseContractError("hardware ids are repeated")
        if not isinstance(self.sbom_sha256, str) or not _SHA256_RE.fullmatch(self.sbom_sha256):
            raise ReleaseContractError("sbom sha256 must be 64 lower-case hex digits")
        if not isinstance(self.notes, str) or len(self.notes) > _MAX_NOTES:
            raise ReleaseContractError(f"notes must be text of at most {_MAX_NOTES} characters")

    @property
    def firmware_path(self) -> str:
        """TUF target path of this release's firmware."""
        return firmware_path(self.product, self.version)

    @property
    def sbom_path(self) -> str:
        """TUF target path of this release's SBOM."""
        return sbom_path(self.product, self.version)

    def to_custom(self) -> dict[str, Any]:
        """Return the firmware target's ``custom`` field for this release."""
        return {
            CUSTOM_KEY: {
                "product": self.product,
                "version": self.version,
                "release_counter": self.release_counter,
                "hardware_ids": list(self.hardware_ids),
                "sbom": {"path": self.sbom_path, "sha256": self.sbom_sha256},
                "notes": self.notes,
            }
        }

    @classmethod
    def from_custom(cls, custom: object, target_path: str | None = None) -> ReleaseInfo:
        """Read and validate the release contract from a target's ``custom``.

        Args:
            custom: The target's ``custom`` field (any JSON value).
            target_path: If given, the path the target is published under; it
                must be this release's firmware path.

        Raises:
            ReleaseContractError: A field is missing, of the wrong type or
                invalid, or the target path does not match.
        """
        if not isinstance(custom, Mapping) or not isinstance(custom.get(CUSTOM_KEY), Mapping):
            raise ReleaseContractError(f"target custom field lacks the {CUSTOM_KEY!r} object")
        data: Mapping[str, Any] = custom[CUSTOM_KEY]
        sbom = _require(data, "sbom", Mapping)
        hardware_ids = _require(data, "hardware_ids", list)
        info = cls(
            product=_require(data, "product", str),
            version=_require(data, "version", str),
            release_counter=_require(data, "release_counter", int),
            hardware_ids=tuple(hardware_ids),
            sbom_sha256=_require(sbom, "sha256", str),
            notes=_require(data, "notes", str) if "notes" in data else "",
        )
        if _require(sbom, "path", str) != info.sbom_path:
            raise ReleaseContractError(
                f"sbom path {sbom['path']!r} is not the release's {info.sbom_path!r}"
            )
        if target_path is not None and target_path != info.firmware_path:
            raise ReleaseContractError(
                f"target {target_path!r} carries release metadata of {info.firmware_path!r}"
            )
        return info

    def runs_on(self, hardware_id: str) -> bool:
        """Whether this release may be installed on ``hardware_id``."""
        return hardware_id in self.hardware_ids
