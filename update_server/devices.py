"""Devices: enrollment, signed check-ins and update events (``/api/v1/devices``).

Endpoints (token roles per :mod:`update_server.auth`; admin always passes):

* ``POST /api/v1/devices`` (operator): enroll a pump.
* ``GET /api/v1/devices`` (operator, reviewer): list pumps with their last state.
* ``GET /api/v1/devices/<id>`` (operator, reviewer): one pump.
* ``DELETE /api/v1/devices/<id>`` (operator): revoke a pump; its requests get 401.
* ``POST /api/v1/devices/<id>/checkin`` (signed by the pump): report state,
  learn the assigned release and the poll interval.
* ``POST /api/v1/devices/<id>/events`` (signed by the pump): report update events.
* ``GET /api/v1/devices/<id>/events`` (operator, reviewer): list a pump's events.

Every input is validated strictly (types, known fields, sizes) before anything
is written, and each request is one transaction committed at its end, so a
refused request leaves no trace (threat SRV-INPUT).

Check-in body (all fields required unless marked optional)::

    {
      "product": "sigma-spectrum",          # must be the enrolled product
      "hardware_id": "rev-b",               # must be the enrolled hardware id
      "version": "1.2.0",                   # semantic version running now
      "release_counter": 3,                 # its anti-rollback counter, >= 0
      "slots": {                            # at most 4; name [a-z0-9_-]{1,16}
        "a": {"state": "active", "version": "1.2.0", "release_counter": 3,
              "sha256": "<64 hex>"}         # version/release_counter/sha256 optional
      },
      "last_update": null | {               # optional, default null
        "version": "1.2.0", "release_counter": 3,
        "result": "committed|rolled-back|failed|in-progress",
        "at": "2026-01-01T12:00:00Z", "error": "..."   # error optional
      },
      "therapy": {"state": "idle|running|programmed", "since": "<iso8601>"},  # since optional
      "agent_state": "idle"                 # optional, one of AGENT_STATES
    }
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, current_app, jsonify, request, url_for
from psycopg.errors import UniqueViolation
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pumpguard.contract import (
    HEX64_RE,
    MAX_CHECKIN_BODY,
    MAX_COUNTER,
    MAX_ENROLL_BODY,
    MAX_ERROR_TEXT,
    MAX_EVENT_DETAIL,
    MAX_EVENTS,
    MAX_EVENTS_BODY,
    MAX_SLOTS,
    MAX_TIME_LENGTH,
    MAX_VERSION_LENGTH,
    RFC3339_RE,
    SHA256_RE,
    SLOT_NAME_RE,
    AgentState,
    EventKind,
    SlotState,
    TherapyState,
    UpdateResult,
)
from pumpguard.errors import ReleaseContractError
from pumpguard.jsonutil import StrictJSONError, loads_strict
from pumpguard.release import SemVer, validate_hardware_id, validate_product
from signer import Repository, UnknownProductError
from update_server import audit
from update_server.assignment import DeviceFacts, choose_release
from update_server.auth import current_caller, require
from update_server.config import ServerConfig
from update_server.db import device_cursor, get_session
from update_server.device_auth import (
    DEVICE_ID_RE,
    AuthenticatedDevice,
    current_device,
    forget_device,
    replay_error,
    signed_device_request,
    validate_device_id,
)
from update_server.device_keys import DeviceKeyError, check_public_key
from update_server.errors import BadRequestError, ConflictError, NotFoundError, UnauthorizedError
from update_server.models import Base, Device, DeviceEvent, utcnow

__all__ = [
    "AGENT_STATES",
    "EVENT_KINDS",
    "MAX_CHECKIN_BODY",
    "MAX_ENROLL_BODY",
    "MAX_ERROR_TEXT",
    "MAX_EVENTS",
    "MAX_EVENTS_BODY",
    "MAX_EVENT_DETAIL",
    "MAX_OFFSET",
    "MAX_PAGE",
    "MAX_SLOTS",
    "SLOT_STATES",
    "THERAPY_STATES",
    "UPDATE_RESULTS",
    "bp",
    "device_json",
    "init_app",
    "invalidate_candidates",
    "parse_json_object",
]

bp = Blueprint("devices", __name__, url_prefix="/api/v1/devices")

# The vocabularies, identifier rules and limits are the wire contract's
# (pumpguard.contract): the agent builds its bodies from the same definitions
# and the OpenAPI document states them.
#: Update event kinds a pump may report.
EVENT_KINDS = tuple(k.value for k in EventKind)
#: Therapy (infusion) states; the agent never installs unless ``idle``.
THERAPY_STATES = tuple(s.value for s in TherapyState)
#: States of one firmware slot.
SLOT_STATES = tuple(s.value for s in SlotState)
#: Outcomes of the last update attempt.
UPDATE_RESULTS = tuple(r.value for r in UpdateResult)
#: The agent's state machine (DESIGN.md, Device agent).
AGENT_STATES = tuple(s.value for s in AgentState)

MAX_PAGE = 1000
DEFAULT_PAGE = 100
MAX_OFFSET = 2**31 - 1
# Always used with fullmatch (the contract's rule): ``$`` also matches before
# a trailing newline, so ``.match`` would accept (and store) ``"a\n"``, or a
# key that ``bytes.fromhex`` reads as another enrolled key (threats
# SRV-INPUT, SRV-DEVICE-SPOOF).
_SLOT_NAME_RE = SLOT_NAME_RE
_HEX64_RE = HEX64_RE
_SHA256_RE = SHA256_RE
_MAX_COUNTER = MAX_COUNTER

T = TypeVar("T")

# The check-in runs for every pump every poll interval: Core statements built
# once (compiled form cached, no ORM unit of work), like update_server.device_auth.
_DEVICES = Base.metadata.tables["devices"]
_RELEASES = Base.metadata.tables["releases"]
_NONCES = Base.metadata.tables["device_nonces"]
# All releases of a product, newest first; cached per process (_candidates).
_SELECT_RELEASES = (
    select(
        _RELEASES.c.product,
        _RELEASES.c.version,
        _RELEASES.c.release_counter,
        _RELEASES.c.hardware_ids,
        _RELEASES.c.firmware_path,
        _RELEASES.c.firmware_length,
        _RELEASES.c.firmware_sha256,
        _RELEASES.c.sbom_path,
    )
    .where(_RELEASES.c.product == bindparam("b_product"))
    .order_by(_RELEASES.c.release_counter.desc())
)
_UPDATE_DEVICE = update(_DEVICES).where(_DEVICES.c.device_id == bindparam("b_device_id"))
# The check-in's write re-checks what authentication read outside the write's
# transaction: still enrolled with that key, product and hardware, not revoked.
_UPDATE_CHECKED_DEVICE = update(_DEVICES).where(
    _DEVICES.c.device_id == bindparam("b_device_id"),
    _DEVICES.c.revoked_at.is_(None),
    _DEVICES.c.public_key == bindparam("b_public_key"),
    _DEVICES.c.product == bindparam("b_product"),
    _DEVICES.c.hardware_id == bindparam("b_hardware_id"),
)
_INSERT_NONCE = insert(_NONCES)
_INSERT_EVENT = insert(Base.metadata.tables["device_events"])
# The whole check-in write on PostgreSQL, one statement in autocommit, i.e.
# one transaction committed (WAL flushed, synchronous_commit stays on) before
# the answer. The device row is updated only if it is still enrolled as
# authenticated, and the nonce inserted only for the row updated; a nonce
# already recorded violates the primary key and the statement, device update
# included, is rolled back (threat SRV-REPLAY). A concurrent copy of the
# request waits on the device row lock, then on the key, and fails the same
# way. Columns as in update_server.models; tests run this on PostgreSQL.
_PG_CHECKIN = (
    "WITH seen AS ("
    "UPDATE devices SET last_seen = $1, version = $2, release_counter = $3,"
    " status = $4::json, assigned_version = $5"
    " WHERE device_id = $6 AND revoked_at IS NULL AND public_key = $7"
    " AND product = $8 AND hardware_id = $9"
    " RETURNING device_id)"
    " INSERT INTO device_nonces (device_id, nonce, seen_at)"
    " SELECT device_id, $10, $11 FROM seen"
)

#: Seconds a server process reuses a product's releases for assignments. A
#: publish through this process drops them at once; other processes see it
#: within this time. The assignment is advice (update_server.assignment): a
#: pump learning of a release 2 s late is all staleness can cause.
CANDIDATE_TTL = 2.0


@dataclass(frozen=True)
class _Candidate:
    """A release row as :func:`choose_release` and the answer need it."""

    product: str
    version: str
    release_counter: int
    hardware_ids: tuple[str, ...]
    firmware_path: str
    firmware_length: int
    firmware_sha256: str
    sbom_path: str


@dataclass
class _CandidateCache:
    """Per app: product -> (monotonic expiry, its releases newest first)."""

    entries: dict[str, tuple[float, tuple[_Candidate, ...]]] = field(default_factory=dict)


def init_app(app: Flask) -> None:
    """Register the devices blueprint."""
    app.extensions["pumpguard.candidates"] = _CandidateCache()
    app.register_blueprint(bp)


def invalidate_candidates(app: Flask) -> None:
    """Forget the cached releases of this process (after a publish)."""
    cache: _CandidateCache = app.extensions["pumpguard.candidates"]
    cache.entries = {}


def _candidates(product: str, counter: int) -> list[_Candidate]:
    """Releases of ``product`` newer than ``counter``, newest first.

    Read once per :data:`CANDIDATE_TTL` per process and product, outside the
    request's transaction: the check-in then needs no read of its own.
    """
    cache: _CandidateCache = current_app.extensions["pumpguard.candidates"]
    now = time.monotonic()
    entry = cache.entries.get(product)
    if entry is None or entry[0] <= now:
        engine = current_app.extensions["pumpguard.engine"]
        with engine.connect() as conn:
            rows = conn.execute(_SELECT_RELEASES, {"b_product": product}).all()
        releases = tuple(
            _Candidate(
                row.product,
                row.version,
                row.release_counter,
                tuple(row.hardware_ids),
                row.firmware_path,
                row.firmware_length,
                row.firmware_sha256,
                row.sbom_path,
            )
            for row in rows
        )
        entry = (now + CANDIDATE_TTL, releases)
        cache.entries[product] = entry
    newer = []
    for release in entry[1]:
        if release.release_counter <= counter:
            break
        newer.append(release)
    return newer


# ------------------------------------------------------------------ parsing


def parse_json_object(data: bytes) -> dict[str, Any]:
    """Parse a request body that must be one JSON object.

    Raises:
        BadRequestError: The body is not UTF-8, not JSON, repeats a key, uses
            NaN/Infinity, nests too deeply, or is not an object.
    """
    try:
        value = loads_strict(data)
    except StrictJSONError as e:
        raise BadRequestError(f"the request body is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise BadRequestError("the request body must be a JSON object")
    return value


def _check_fields(
    obj: object, where: str, required: Iterable[str], optional: Iterable[str] = ()
) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise BadRequestError(f"{where} must be a JSON object")
    required = set(required)
    unknown = sorted(set(obj) - required - set(optional))
    if unknown:
        raise BadRequestError(f"{where} has unknown field(s): {', '.join(unknown)}")
    missing = sorted(required - set(obj))
    if missing:
        raise BadRequestError(f"{where} lacks field(s): {', '.join(missing)}")
    return obj


def _contract(check: Callable[[object], T], value: object, where: str) -> T:
    try:
        return check(value)
    except ReleaseContractError as e:
        raise BadRequestError(f"{where}: {e}") from e


def _version(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_VERSION_LENGTH:
        raise BadRequestError(
            f"{where} must be a semantic version of at most {MAX_VERSION_LENGTH} characters"
        )
    _contract(SemVer.parse, value, where)
    return value


def _counter(value: object, where: str) -> int:
    # bool is an int subclass; a counter of true is never meant.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNTER:
        raise BadRequestError(f"{where} must be an integer from 0 to 2**63-1")
    return value


def _choice(value: object, where: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise BadRequestError(f"{where} must be one of {', '.join(choices)}")
    return value


def _timestamp(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TIME_LENGTH:
        raise BadRequestError(f"{where} must be an RFC 3339 time with a time zone")
    if not RFC3339_RE.fullmatch(value):
        raise BadRequestError(
            f"{where} {value!r} is not an RFC 3339 time with a time zone"
            " (YYYY-MM-DDTHH:MM:SS[.f] and Z or +HH:MM)"
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as e:
        raise BadRequestError(f"{where} {value!r} is not an ISO 8601 time") from e
    if parsed.tzinfo is None:
        raise BadRequestError(f"{where} {value!r} lacks a time zone (use Z for UTC)")
    try:
        # Stored in UTC: a valid time at the edge of the date range (year 1
        # east of UTC, year 9999 west of it) has no UTC form.
        return iso(parsed)
    except (OverflowError, ValueError) as e:
        raise BadRequestError(f"{where} {value!r} is out of the supported date range") from e


def _text(value: object, where: str, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise BadRequestError(f"{where} must be text of at most {limit} characters")
    return value


def _small_object(value: object, where: str, limit: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequestError(f"{where} must be a JSON object")
    if len(json.dumps(value, separators=(",", ":"))) > limit:
        raise BadRequestError(f"{where} is larger than {limit} bytes")
    return value


def _public_key(value: object) -> str:
    """The canonical form of an enrolled key: 64 lower-case hex digits.

    One key has exactly one stored form, so the one-key-per-pump check and
    the unique index on ``devices.public_key`` compare keys, not spellings.
    A small-order, mixed-order, off-curve or non-canonically encoded key is
    refused: for a small-order key anyone can sign as the pump (threat
    SRV-DEVICE-SPOOF; :mod:`update_server.device_keys`).
    """
    if not isinstance(value, str) or not _HEX64_RE.fullmatch(value):
        raise BadRequestError("public_key must be a raw Ed25519 public key as 64 hex digits")
    raw = bytes.fromhex(value)
    try:
        check_public_key(raw)
    except DeviceKeyError as e:
        raise BadRequestError(f"public_key {e}") from e
    return raw.hex()


def _query_int(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12 or not low <= int(raw) <= high:
        raise BadRequestError(f"query parameter {name} must be an integer from {low} to {high}")
    return int(raw)


def _query_names(allowed: Iterable[str]) -> None:
    unknown = sorted(set(request.args) - set(allowed))
    if unknown:
        raise BadRequestError(f"unknown query parameter(s): {', '.join(unknown)}")


def iso(when: datetime) -> str:
    """A time as ISO 8601 UTC with ``Z`` (naive times from SQLite are UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _iso_or_none(when: datetime | None) -> str | None:
    return None if when is None else iso(when)


# --------------------------------------------------------------- rendering


def device_json(device: Device) -> dict[str, Any]:
    """How the API shows an enrolled device and what it last reported."""
    return {
        "device_id": device.device_id,
        "product": device.product,
        "hardware_id": device.hardware_id,
        "public_key": device.public_key,
        "enrolled_at": _iso_or_none(device.enrolled_at),
        "revoked_at": _iso_or_none(device.revoked_at),
        "last_seen": _iso_or_none(device.last_seen),
        "version": device.version,
        "release_counter": device.release_counter,
        "assigned_version": device.assigned_version,
        "status": device.status or {},
    }


def _release_json(release: _Candidate) -> dict[str, Any]:
    return {
        "product": release.product,
        "version": release.version,
        "release_counter": release.release_counter,
        "firmware": {
            "path": release.firmware_path,
            "length": release.firmware_length,
            "sha256": release.firmware_sha256,
        },
        "sbom": {"path": release.sbom_path},
    }


def _event_json(event: DeviceEvent) -> dict[str, Any]:
    stored = event.detail or {}
    return {
        "id": event.id,
        "kind": event.kind,
        "at": stored.get("at"),
        "received_at": _iso_or_none(event.received_at),
        "detail": stored.get("detail", {}),
    }


# -------------------------------------------------------------- enrollment


def _require_delegated(config: ServerConfig, product: str) -> None:
    try:
        Repository(config.repo_dir).state().product(product)
    except UnknownProductError as e:
        raise BadRequestError(
            f"product {product!r} is not delegated in the repository; add it with"
            " `pumpguard repo add-product` first"
        ) from e


def _enrollment_conflict(session: Session, device_id: str, public_key: str) -> ConflictError | None:
    """Why ``device_id`` with ``public_key`` cannot be enrolled, if it cannot."""
    if session.get(Device, device_id) is not None:
        return ConflictError(f"device {device_id!r} is already enrolled")
    # One key per pump: a key shared by several pumps would let one extracted
    # key speak for all of them (threat SRV-DEVICE-SPOOF). Revoked devices
    # keep their key; the unique index on devices.public_key enforces this.
    twin = session.execute(
        select(Device.device_id).where(Device.public_key == public_key).limit(1)
    ).scalar_one_or_none()
    if twin is not None:
        return ConflictError(f"this public key is already enrolled for device {twin!r}")
    return None


@bp.post("")
@require("operator")
def enroll() -> tuple[Response, int, dict[str, str]]:
    """Enroll a pump: ``{"device_id", "hardware_id", "product", "public_key"}``.

    Returns 201 with the device; 400 for invalid input, 409 if the device id
    or the public key is already enrolled.
    """
    request.max_content_length = MAX_ENROLL_BODY
    body = _check_fields(
        parse_json_object(request.get_data()),
        "the enrollment",
        required=("device_id", "hardware_id", "product", "public_key"),
    )
    device_id = validate_device_id(body["device_id"])
    hardware_id = _contract(validate_hardware_id, body["hardware_id"], "hardware_id")
    product = _contract(validate_product, body["product"], "product")
    public_key = _public_key(body["public_key"])
    _require_delegated(current_app.config["PUMPGUARD"], product)

    session = get_session()
    # Checked first for a clear answer; a concurrent enrollment can still get
    # in between, and then the insert's IntegrityError decides (below).
    conflict = _enrollment_conflict(session, device_id, public_key)
    if conflict is not None:
        raise conflict
    device = Device(
        device_id=device_id,
        hardware_id=hardware_id,
        product=product,
        public_key=public_key,
        status={},
    )
    session.add(device)
    try:
        session.flush()
    except IntegrityError as e:
        # A concurrent enrollment of the same id (primary key) or the same key
        # (unique index) committed first; the insert waited for it.
        session.rollback()
        conflict = _enrollment_conflict(session, device_id, public_key)
        if conflict is None:  # no other constraint of this insert can fail
            raise
        raise conflict from e
    audit.append(
        session,
        current_caller().actor,
        "device.enroll",
        device_id=device_id,
        product=product,
        hardware_id=hardware_id,
        public_key=public_key,
    )
    session.commit()
    location = url_for("devices.get_device", device_id=device_id)
    return jsonify(device_json(device)), 201, {"Location": location}


def _device_or_404(device_id: str, *, for_update: bool = False) -> Device:
    device = None
    if DEVICE_ID_RE.fullmatch(device_id):
        query = select(Device).where(Device.device_id == device_id)
        if for_update:
            query = query.with_for_update()
        device = get_session().execute(query).scalar_one_or_none()
    if device is None:
        raise NotFoundError(f"no device {device_id!r}")
    return device


@bp.delete("/<device_id>")
@require("operator")
def revoke(device_id: str) -> Response:
    """Revoke a pump: from now on its signed requests get 401.

    Returns 200 with the device; 404 if unknown, 409 if already revoked.
    """
    session = get_session()
    # Locked, so two concurrent revocations audit once.
    device = _device_or_404(device_id, for_update=True)
    if device.revoked_at is not None:
        raise ConflictError(f"device {device_id!r} is already revoked")
    device.revoked_at = utcnow()
    audit.append(session, current_caller().actor, "device.revoke", device_id=device_id)
    session.commit()
    return jsonify(device_json(device))


@bp.get("")
@require("operator", "reviewer")
def list_devices() -> Response:
    """List pumps by device id: ``?product=&limit=&offset=``.

    Returns ``{"devices": [...], "total", "limit", "offset"}``.
    """
    _query_names(("product", "limit", "offset"))
    limit = _query_int("limit", DEFAULT_PAGE, 1, MAX_PAGE)
    offset = _query_int("offset", 0, 0, MAX_OFFSET)
    query = select(Device)
    count = select(func.count()).select_from(Device)
    product = request.args.get("product")
    if product is not None:
        _contract(validate_product, product, "query parameter product")
        query = query.where(Device.product == product)
        count = count.where(Device.product == product)
    session = get_session()
    devices = session.execute(
        query.order_by(Device.device_id).limit(limit).offset(offset)
    ).scalars()
    return jsonify(
        {
            "devices": [device_json(d) for d in devices],
            "total": session.execute(count).scalar_one(),
            "limit": limit,
            "offset": offset,
        }
    )


@bp.get("/<device_id>")
@require("operator", "reviewer")
def get_device(device_id: str) -> Response:
    """One pump and its last state; 404 if unknown."""
    return jsonify(device_json(_device_or_404(device_id)))


# ---------------------------------------------------------------- check-in


def _parse_slots(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequestError("slots must be a JSON object of slot name to slot state")
    if len(value) > MAX_SLOTS:
        raise BadRequestError(f"at most {MAX_SLOTS} slots")
    slots: dict[str, Any] = {}
    for name, raw in value.items():
        if not _SLOT_NAME_RE.fullmatch(name):
            raise BadRequestError(f"slot name {name!r} must be 1-16 of [a-z0-9_-]")
        where = f"slots.{name}"
        slot = _check_fields(raw, where, ("state",), ("version", "release_counter", "sha256"))
        clean: dict[str, Any] = {"state": _choice(slot["state"], f"{where}.state", SLOT_STATES)}
        if slot.get("version") is not None:
            clean["version"] = _version(slot["version"], f"{where}.version")
        if slot.get("release_counter") is not None:
            clean["release_counter"] = _counter(slot["release_counter"], f"{where}.release_counter")
        if "sha256" in slot:
            sha = slot["sha256"]
            if not isinstance(sha, str) or not _SHA256_RE.fullmatch(sha):
                raise BadRequestError(f"{where}.sha256 must be 64 lower-case hex digits")
            clean["sha256"] = sha
        slots[name] = clean
    return slots


def _parse_last_update(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    where = "last_update"
    raw = _check_fields(value, where, ("version", "release_counter", "result", "at"), ("error",))
    clean = {
        "version": _version(raw["version"], f"{where}.version"),
        "release_counter": _counter(raw["release_counter"], f"{where}.release_counter"),
        "result": _choice(raw["result"], f"{where}.result", UPDATE_RESULTS),
        "at": _timestamp(raw["at"], f"{where}.at"),
    }
    if "error" in raw:
        clean["error"] = _text(raw["error"], f"{where}.error", MAX_ERROR_TEXT)
    return clean


def _parse_therapy(value: object) -> dict[str, Any]:
    raw = _check_fields(value, "therapy", ("state",), ("since",))
    clean = {"state": _choice(raw["state"], "therapy.state", THERAPY_STATES)}
    if "since" in raw:
        clean["since"] = _timestamp(raw["since"], "therapy.since")
    return clean


def _mismatch(field: str, reported: str, enrolled: str) -> ConflictError:
    return ConflictError(
        f"the pump reports {field} {reported!r} but is enrolled with {enrolled!r}",
        reported=reported,
        enrolled=enrolled,
    )


def _write_checkin(
    device: AuthenticatedDevice,
    now: datetime,
    version: str,
    counter: int,
    status: dict[str, Any],
    assigned: _Candidate | None,
) -> None:
    """Record the check-in and its nonce in one transaction, committed here.

    Raises:
        UnauthorizedError: The device was revoked (or re-keyed) since it was
            authenticated; nothing is written.
        ConflictError: The nonce was already used (a replay); nothing is written.
    """
    assigned_version = assigned.version if assigned else None
    cur = device_cursor()
    if cur is not None:
        values = (
            now,
            version,
            counter,
            json.dumps(status, separators=(",", ":")),
            assigned_version,
            device.device_id,
            device.public_key,
            device.product,
            device.hardware_id,
            device.nonce,
            device.seen_at,
        )
        try:
            cur.execute(_PG_CHECKIN, values)
            written = cur.rowcount
        except UniqueViolation as e:
            raise replay_error() from e
    else:
        session = get_session()
        conn = session.connection()
        written = conn.execute(
            _UPDATE_CHECKED_DEVICE,
            {
                "b_device_id": device.device_id,
                "b_public_key": device.public_key,
                "b_product": device.product,
                "b_hardware_id": device.hardware_id,
                "last_seen": now,
                "version": version,
                "release_counter": counter,
                "status": status,
                "assigned_version": assigned_version,
            },
        ).rowcount
        if written == 1:
            try:
                conn.execute(
                    _INSERT_NONCE,
                    {
                        "device_id": device.device_id,
                        "nonce": device.nonce,
                        "seen_at": device.seen_at,
                    },
                )
            except IntegrityError as e:
                session.rollback()
                raise replay_error() from e
            session.commit()
        else:
            session.rollback()
    if written != 1:
        # Revoked since it was cached (or read): the next request reads again.
        forget_device(device.device_id)
        raise UnauthorizedError(f"device {device.device_id!r} is not enrolled or was revoked")


@bp.post("/<device_id>/checkin")
@signed_device_request(MAX_CHECKIN_BODY, defer_nonce=True)
def checkin(device_id: str) -> Response:
    """Record what the pump runs and answer with its assigned release.

    Returns ``{"assigned": {...} | null, "poll_interval", "server_time"}``;
    400 for a malformed report, 409 if product or hardware id differ from the
    enrollment or the request is a replay. Nothing is written before all
    checks passed; then the device's state and the request's nonce are
    written in one transaction (:func:`_write_checkin`).
    """
    device = current_device()
    body = _check_fields(
        parse_json_object(request.get_data()),
        "the check-in",
        required=("product", "hardware_id", "version", "release_counter", "slots", "therapy"),
        optional=("last_update", "agent_state"),
    )
    product = _contract(validate_product, body["product"], "product")
    hardware_id = _contract(validate_hardware_id, body["hardware_id"], "hardware_id")
    version = _version(body["version"], "version")
    counter = _counter(body["release_counter"], "release_counter")
    status: dict[str, Any] = {
        "slots": _parse_slots(body["slots"]),
        "last_update": _parse_last_update(body.get("last_update")),
        "therapy": _parse_therapy(body["therapy"]),
    }
    if body.get("agent_state") is not None:
        status["agent_state"] = _choice(body["agent_state"], "agent_state", AGENT_STATES)
    # A pump must not be offered another product's or hardware's firmware
    # because it claims to be something it was not enrolled as.
    if product != device.product:
        raise _mismatch("product", product, device.product)
    if hardware_id != device.hardware_id:
        raise _mismatch("hardware_id", hardware_id, device.hardware_id)

    facts = DeviceFacts(device.device_id, device.product, device.hardware_id, counter)
    assigned = choose_release(_candidates(product, counter), facts)
    now = utcnow()
    _write_checkin(device, now, version, counter, status, assigned)
    response = jsonify(
        {
            "assigned": _release_json(assigned) if assigned else None,
            "poll_interval": current_app.config["PUMPGUARD"].poll_interval,
            "server_time": iso(now),
        }
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# ------------------------------------------------------------------ events


def _parse_events(body: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    raw = body["events"]
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_EVENTS:
        raise BadRequestError(f"events must be a list of 1 to {MAX_EVENTS} events")
    events = []
    for i, item in enumerate(raw):
        where = f"events[{i}]"
        event = _check_fields(item, where, ("kind", "at"), ("detail",))
        events.append(
            (
                _choice(event["kind"], f"{where}.kind", EVENT_KINDS),
                _timestamp(event["at"], f"{where}.at"),
                _small_object(event.get("detail", {}), f"{where}.detail", MAX_EVENT_DETAIL),
            )
        )
    return events


@bp.post("/<device_id>/events")
@signed_device_request(MAX_EVENTS_BODY)
def post_events(device_id: str) -> tuple[Response, int]:
    """Store update events: ``{"events": [{"kind", "at", "detail"?}, ...]}``.

    Returns 201 ``{"stored": n}``; 400 for a malformed batch (nothing stored).
    """
    device = current_device()
    body = _check_fields(parse_json_object(request.get_data()), "the request", ("events",))
    events = _parse_events(body)
    session = get_session()
    conn = session.connection()
    now = utcnow()
    # The model has no column for the pump's own time; it is kept next to
    # the detail, which stays exactly as the pump sent it.
    conn.execute(
        _INSERT_EVENT,
        [
            {
                "device_id": device.device_id,
                "received_at": now,
                "kind": kind,
                "detail": {"at": at, "detail": detail},
            }
            for kind, at, detail in events
        ],
    )
    conn.execute(_UPDATE_DEVICE, {"b_device_id": device.device_id, "last_seen": now})
    session.commit()
    return jsonify({"stored": len(events)}), 201


@bp.get("/<device_id>/events")
@require("operator", "reviewer")
def list_events(device_id: str) -> Response:
    """A pump's events, newest first: ``?kind=&limit=&offset=``.

    Returns ``{"events": [...], "total", "limit", "offset"}``; 404 if unknown.
    """
    _query_names(("kind", "limit", "offset"))
    limit = _query_int("limit", DEFAULT_PAGE, 1, MAX_PAGE)
    offset = _query_int("offset", 0, 0, MAX_OFFSET)
    device = _device_or_404(device_id)
    where = [DeviceEvent.device_id == device.device_id]
    kind = request.args.get("kind")
    if kind is not None:
        where.append(DeviceEvent.kind == _choice(kind, "query parameter kind", EVENT_KINDS))
    session = get_session()
    events = session.execute(
        select(DeviceEvent)
        .where(*where)
        .order_by(DeviceEvent.received_at.desc(), DeviceEvent.id.desc())
        .limit(limit)
        .offset(offset)
    ).scalars()
    total = session.execute(select(func.count()).select_from(DeviceEvent).where(*where))
    return jsonify(
        {
            "events": [_event_json(e) for e in events],
            "total": total.scalar_one(),
            "limit": limit,
            "offset": offset,
        }
    )
