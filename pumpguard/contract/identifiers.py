"""The identifier rules and size limits of the wire contract.

Every pattern is meant for ``fullmatch`` (``$`` would also match before a
final newline) and spells digits as ``[0-9]`` under ``re.ASCII`` (``\\d``
matches any Unicode digit, which ``int()`` then parses).
"""

import re
from typing import TypeGuard

from pumpguard.errors import ReleaseContractError

__all__ = [
    "DEVICE_ID_RE",
    "HARDWARE_ID_RE",
    "HEX64_RE",
    "MAX_CHECKIN_BODY",
    "MAX_COUNTER",
    "MAX_DEVICE_ID_LENGTH",
    "MAX_ENROLL_BODY",
    "MAX_ERROR_TEXT",
    "MAX_EVENTS",
    "MAX_EVENTS_BODY",
    "MAX_EVENT_DETAIL",
    "MAX_SLOTS",
    "MAX_TIME_LENGTH",
    "MAX_VERSION_LENGTH",
    "PRODUCT_RE",
    "RESERVED_ROLE_NAMES",
    "RFC3339_RE",
    "SEMVER_RE",
    "SHA256_RE",
    "SLOT_NAME_RE",
    "is_device_id",
    "is_rfc3339",
    "validate_device_id",
    "validate_hardware_id",
    "validate_product",
    "validate_sha256",
    "validate_slot_name",
    "validate_version",
]

# ------------------------------------------------------------- identifiers

#: Device ids: 1-128 of ``[A-Za-z0-9._:-]``, starting with a letter or digit.
#:
#: The one rule for the agent's config, the server and the OpenAPI document.
#: It is the server's rule of record (pumps enrolled under it must keep
#: working), and it is safe on the pump too: the id travels as one URL path
#: segment (``:`` is a plain ``pchar`` in RFC 3986, ``.`` and ``..`` are
#: impossible because the first character is a letter or digit, ``/``, ``%``,
#: ``?`` and ``#`` are excluded) and as the signed ``X-Pumpguard-Device``
#: header (ASCII only, no whitespace). 128 characters leave room for
#: UDI-derived ids (``vendor:model:serial``). ``\A`` and ``\Z`` keep even a
#: ``.match`` by another caller exact.
DEVICE_ID_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z", re.ASCII)
#: Longest device id, in characters.
MAX_DEVICE_ID_LENGTH = 128
#: Products (TUF role names): 1-64 lower-case letters, digits, inner hyphens.
PRODUCT_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?", re.ASCII)
#: TUF's top-level role names cannot be product names (the product is a role).
RESERVED_ROLE_NAMES = frozenset({"root", "targets", "snapshot", "timestamp"})
#: Pump hardware revisions: 1-64 letters, digits, ``.``, ``_``, ``-``.
HARDWARE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)
#: Slot names in a check-in: 1-16 of ``[a-z0-9_-]``. The agent's own
#: configuration is stricter (no ``-``: the name also becomes a bootloader
#: variable), a subset of this.
SLOT_NAME_RE = re.compile(r"[a-z0-9_-]{1,16}", re.ASCII)
#: semver.org 2.0.0, the official regular expression (with ``[0-9]`` for ``\d``).
SEMVER_RE = re.compile(
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-((?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?",
    re.ASCII,
)
#: Longest version in a check-in, in characters.
MAX_VERSION_LENGTH = 64
#: A SHA-256 digest as the contract writes it: 64 lower-case hex digits.
SHA256_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
#: 32 bytes in hex of either case (an enrollment's raw Ed25519 public key).
HEX64_RE = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)
#: Times in bodies: RFC 3339 date-times (upper-case T and Z, a zone, seconds
#: 00-59, no year 0). ``datetime.fromisoformat`` alone also reads ISO 8601
#: forms no pump writes (``20260101T120000Z``, ``2026-W01-4``, ``+0100``),
#: which the OpenAPI document cannot state; this is the rule both follow.
RFC3339_RE = re.compile(
    r"(?!0000)[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])",
    re.ASCII,
)
#: Longest time accepted, in characters.
MAX_TIME_LENGTH = 40

# ------------------------------------------------------------------ limits

# Size limits (threat SRV-DOS): a check-in is a few hundred bytes, so 16 KiB
# leaves room; 100 events of at most 2 KiB of detail each fit in 256 KiB.
#: Largest enrollment body, bytes.
MAX_ENROLL_BODY = 4096
#: Largest check-in body, bytes.
MAX_CHECKIN_BODY = 16 * 1024
#: Largest events body, bytes.
MAX_EVENTS_BODY = 256 * 1024
#: Most events in one batch.
MAX_EVENTS = 100
#: Largest event detail, as compact JSON, characters.
MAX_EVENT_DETAIL = 2048
#: Most slots in a check-in.
MAX_SLOTS = 4
#: Longest ``last_update.error``, characters.
MAX_ERROR_TEXT = 512
#: Largest anti-rollback counter (a signed 64-bit column).
MAX_COUNTER = 2**63 - 1

# -------------------------------------------------------------- validators


def is_device_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a device id (:data:`DEVICE_ID_RE`)."""
    return isinstance(value, str) and DEVICE_ID_RE.fullmatch(value) is not None


def validate_device_id(value: object) -> str:
    """Return ``value`` if it is a device id.

    Raises:
        ReleaseContractError: It is not 1-128 letters, digits, ``.``, ``_``,
            ``:`` or ``-`` starting with a letter or digit.
    """
    if not isinstance(value, str) or not DEVICE_ID_RE.fullmatch(value):
        raise ReleaseContractError(
            f"device_id {value!r} must be 1-128 letters, digits, '.', '_', ':' or '-',"
            " starting with a letter or digit"
        )
    return value


def validate_product(product: object) -> str:
    """Return ``product`` if it is a valid product (and role) name.

    Raises:
        ReleaseContractError: The name is not lower-case letters, digits and
            inner hyphens of 1 to 64 characters, or is a TUF top-level role.
    """
    if not isinstance(product, str) or not PRODUCT_RE.fullmatch(product):
        raise ReleaseContractError(
            f"product {product!r} must be 1-64 lower-case letters, digits and inner hyphens"
        )
    if product in RESERVED_ROLE_NAMES:
        raise ReleaseContractError(f"product {product!r} is a reserved TUF role name")
    return product


def validate_hardware_id(hardware_id: object) -> str:
    """Return ``hardware_id`` if it is a valid pump hardware revision id.

    Raises:
        ReleaseContractError: The id is empty, too long or has other characters
            than letters, digits, dot, underscore and hyphen.
    """
    if not isinstance(hardware_id, str) or not HARDWARE_ID_RE.fullmatch(hardware_id):
        raise ReleaseContractError(
            f"hardware id {hardware_id!r} must be 1-64 letters, digits, '.', '_' or '-'"
        )
    return hardware_id


def validate_slot_name(name: object) -> str:
    """Return ``name`` if it is a slot name of a check-in.

    Raises:
        ReleaseContractError: Not 1-16 of ``[a-z0-9_-]``.
    """
    if not isinstance(name, str) or not SLOT_NAME_RE.fullmatch(name):
        raise ReleaseContractError(f"slot name {name!r} must be 1-16 of [a-z0-9_-]")
    return name


def validate_version(version: object) -> str:
    """Return ``version`` if it is a semantic version of at most 64 characters.

    Raises:
        ReleaseContractError: It is not.
    """
    if (
        not isinstance(version, str)
        or len(version) > MAX_VERSION_LENGTH
        or not SEMVER_RE.fullmatch(version)
    ):
        raise ReleaseContractError(
            f"version {version!r} must be a semantic version of at most"
            f" {MAX_VERSION_LENGTH} characters"
        )
    return version


def validate_sha256(digest: object) -> str:
    """Return ``digest`` if it is 64 lower-case hex digits.

    Raises:
        ReleaseContractError: It is not.
    """
    if not isinstance(digest, str) or not SHA256_RE.fullmatch(digest):
        raise ReleaseContractError(f"sha256 {digest!r} must be 64 lower-case hex digits")
    return digest


def is_rfc3339(value: object) -> TypeGuard[str]:
    """Whether ``value`` has the form of an RFC 3339 time (:data:`RFC3339_RE`).

    The server further refuses a time without a UTC form (the edges of the
    date range); the form is all the agent needs to check.
    """
    return (
        isinstance(value, str)
        and len(value) <= MAX_TIME_LENGTH
        and RFC3339_RE.fullmatch(value) is not None
    )
