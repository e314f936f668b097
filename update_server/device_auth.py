"""Server side of signed device requests.

A pump signs every request with its enrolled Ed25519 key over the method, the
path with query, the body's sha256, a timestamp and a nonce
(:mod:`pumpguard.device_auth` is the contract both sides import). The server
refuses, in this order:

* a request without the four signature headers, or signed by another device
  than the one in the URL (401; threat SRV-DEVICE-SPOOF);
* a declared body above the route's limit (413), before anything is read;
* a timestamp header more than ``clock_skew`` seconds off the server clock
  (401 that says the clock is off; threat SRV-REPLAY), checked again once
  the signature verified;
* an unknown or revoked device (401): the first check that needs the
  database, unless the enrollment is cached;
* a signature that does not verify (401);
* a nonce already seen for this device within the window (409; SRV-REPLAY).

Everything before the enrollment is read needs no database, so a flood of
forged or unsigned requests costs no database connection; the ones that
name devices (which must be read before a signature can be checked) share
the process's bounded pool (:func:`update_server.db.device_cursor`; threat
SRV-DOS).

The nonce is inserted in the same transaction as the request's own writes,
and the primary key ``(device_id, nonce)`` makes a second insert fail, so two
concurrent copies of one request cannot both pass on PostgreSQL (the second
insert waits for the first transaction and then violates the key) nor on
SQLite (writers are serialised). A request that fails after authentication
writes nothing, its nonce included; replaying it fails the same way, because
the checks that follow depend only on the signed body and the enrollment.

Two ways to record the nonce, chosen by the view:

* by default the enrollment is read and the nonce inserted in the request's
  session transaction before the view runs, and the view commits (events);
* with ``defer_nonce=True`` (the check-in, the hot path) the enrollment
  comes from the process's :class:`IdentityCache`, or is read on its own (on
  PostgreSQL an autocommit read, no transaction), and the view writes the
  nonce together with its own changes at its end (``devices._write_checkin``;
  on PostgreSQL one statement, which is the request's whole transaction and
  its only round trip, committed before the answer). That write re-checks
  the enrollment (not revoked, same key, product and hardware), so a
  revocation since the cache or the read refuses the request and writes
  nothing.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Flask, current_app, g, request
from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.exceptions import RequestEntityTooLarge

from pumpguard.contract import DEVICE_ID_RE as CONTRACT_DEVICE_ID_RE
from pumpguard.contract import is_device_id
from pumpguard.device_auth import (
    HEADER_DEVICE,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    MAX_TIMESTAMP,
    DeviceAuthError,
    verify_request_signature,
)
from update_server.config import ServerConfig
from update_server.db import device_cursor, get_session
from update_server.device_keys import check_stored_key
from update_server.errors import BadRequestError, ConflictError, UnauthorizedError
from update_server.models import Base, DeviceNonce

__all__ = [
    "DEVICE_ID_RE",
    "AuthenticatedDevice",
    "Enrollment",
    "IdentityCache",
    "current_device",
    "forget_device",
    "init_app",
    "load_public_key",
    "prune_nonces",
    "replay_error",
    "signed_device_request",
    "signed_request_path",
    "validate_device_id",
]

logger = logging.getLogger(__name__)

#: Device ids: the wire contract's rule (:data:`pumpguard.contract.DEVICE_ID_RE`),
#: the same for the agent's config and the OpenAPI document.
DEVICE_ID_RE = CONTRACT_DEVICE_ID_RE

F = TypeVar("F", bound=Callable[..., Any])

_SIGNED_HEADERS = (HEADER_DEVICE, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)
# Digits of the largest timestamp the contract accepts (MAX_TIMESTAMP).
_MAX_TIMESTAMP_DIGITS = len(str(MAX_TIMESTAMP))

#: Seconds between prunes of expired nonces, per server process.
PRUNE_INTERVAL = 60.0

#: Enrollments a server process keeps (:class:`IdentityCache`): about 300
#: bytes each, so at most some 30 MB; a fleet larger than this still works,
#: with a database read for the devices that fell out.
IDENTITY_CACHE_SIZE = 100_000

# The signed-request path runs for every check-in, so it uses Core statements
# built once: SQLAlchemy reuses their compiled form and no ORM unit of work
# runs, which measured at about half the database CPU of the ORM path.
_DEVICES = Base.metadata.tables["devices"]
_SELECT_DEVICE = select(_DEVICES.c.public_key, _DEVICES.c.product, _DEVICES.c.hardware_id).where(
    _DEVICES.c.device_id == bindparam("b_device_id"), _DEVICES.c.revoked_at.is_(None)
)
_INSERT_NONCE = insert(Base.metadata.tables["device_nonces"])
# The same read as plain SQL for the PostgreSQL fast path (update_server.db.
# device_cursor); test_device_auth runs both.
_PG_SELECT_DEVICE = (
    "SELECT public_key, product, hardware_id FROM devices"
    " WHERE device_id = $1 AND revoked_at IS NULL"
)


@dataclass(frozen=True)
class AuthenticatedDevice:
    """The enrolled device a signed request came from.

    Attributes:
        device_id: Its device id (equal to the one in the URL).
        product: The product it is enrolled for.
        hardware_id: The hardware revision it is enrolled with.
        public_key: The enrolled key (hex) that verified the request; a
            deferred write re-checks it together with the revocation.
        nonce: The request's nonce, already recorded unless the view
            deferred it (``signed_device_request(defer_nonce=True)``).
        seen_at: When the request was authenticated (the nonce's time).
    """

    device_id: str
    product: str
    hardware_id: str
    public_key: str
    nonce: str
    seen_at: datetime


def validate_device_id(value: object) -> str:
    """Return ``value`` if it is a valid device id.

    Raises:
        BadRequestError: It is not 1-128 letters, digits, ``.``, ``_``, ``:``
            or ``-`` starting with a letter or digit.
    """
    if not is_device_id(value):
        raise BadRequestError(
            f"device_id {value!r} must be 1-128 letters, digits, '.', '_', ':' or '-',"
            " starting with a letter or digit"
        )
    return value


@functools.lru_cache(maxsize=65536)
def load_public_key(hex_key: str) -> Ed25519PublicKey:
    """The key object of an enrolled raw public key (hex), cached per process.

    Keyed by the key itself, not by the device, so a cached entry can never
    outlive or stand for another enrollment; revocation is checked on the
    device row of every request.

    A stored key that enrollment refuses today (small order, non-canonical,
    outside the prime-order subgroup) is refused here too, so a row written
    before migration 0003 or by an edit of the database authenticates nothing
    (threat SRV-DEVICE-SPOOF). A refusal is not cached here; it costs a
    libsodium check per request (its diagnosis is cached), less than the
    signature verification a usable key costs.

    Raises:
        ValueError: ``hex_key`` is not a key a pump may be enrolled with
            (:class:`~update_server.device_keys.StoredDeviceKeyError`, also a
            ``DeviceAuthError``: the request gets 401).
    """
    return check_stored_key(hex_key)


def signed_request_path() -> str:
    """The path with query the device signed, as this request received it.

    The mount point (``SCRIPT_NAME``) is included, because the pump signs the
    path it requested; a query string is appended only when present.

    Raises:
        UnauthorizedError: The query string is not ASCII (pumps send URL-encoded
            queries, so such a request cannot carry a valid signature).
    """
    path = request.root_path + request.path
    if not request.query_string:
        return path
    try:
        query = request.query_string.decode("ascii")
    except UnicodeDecodeError as e:
        raise UnauthorizedError("the query string is not ASCII") from e
    return f"{path}?{query}"


def current_device() -> AuthenticatedDevice:
    """The authenticated device of this request (after :func:`signed_device_request`)."""
    device: AuthenticatedDevice = g.device
    return device


def signed_device_request(max_body: int, *, defer_nonce: bool = False) -> Callable[[F], F]:
    """Require a request signed by the device named in the URL.

    The view must take a ``device_id`` URL argument. It runs with the device
    in :func:`current_device`, its nonce already recorded in the request's
    transaction, and must commit that transaction itself when it succeeds.

    Args:
        max_body: Largest request body accepted, in bytes (413 above).
        defer_nonce: Do not record the nonce: the view must write it in the
            same transaction as its own changes, and refuse the request when
            that fails (threat SRV-REPLAY), as ``devices.checkin`` does.
    """

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, device_id: str, **kwargs: Any) -> Any:
            g.device = authenticate_device(device_id, max_body, record_nonce=not defer_nonce)
            rv = view(*args, device_id=device_id, **kwargs)
            _maybe_prune(current_app)
            return rv

        return wrapper  # type: ignore[return-value]

    return decorator


def authenticate_device(
    device_id: str, max_body: int, *, record_nonce: bool = True
) -> AuthenticatedDevice:
    """Authenticate the current request as ``device_id``.

    Every check that needs no database comes first (headers present, signer
    equal to the URL's device, a valid device id, the declared body within
    ``max_body``, the timestamp header within the skew window). The
    enrollment read is the first use of the database: the key must be known
    before the signature can be checked, so a forged request for an uncached
    device costs one read on a pooled connection, never a connection of its
    own.

    Args:
        device_id: The device the URL names.
        max_body: Largest request body accepted, in bytes.
        record_nonce: Insert the nonce in the request's session transaction
            now (a replay is refused here); False leaves it to the caller.

    Returns:
        The enrolled device.

    Raises:
        UnauthorizedError: Not signed, signed by another device, unknown or
            revoked device, bad signature, or a stale timestamp.
        ConflictError: The nonce was seen before (a replay).
        RequestEntityTooLarge: The body exceeds ``max_body``.
    """
    config: ServerConfig = current_app.config["PUMPGUARD"]
    headers = _signed_headers()
    # A device may only act as itself: the signer must be the device in the
    # URL, so one pump's key can never report for another (threat SRV-DEVICE-SPOOF).
    claimed = headers[HEADER_DEVICE]
    if claimed != device_id:
        raise UnauthorizedError(
            f"the request is signed by device {claimed!r}, not by {device_id!r} in the URL"
        )
    if not DEVICE_ID_RE.fullmatch(device_id):
        raise UnauthorizedError(f"device {device_id!r} is not enrolled or was revoked")
    # Bound the body before reading it: the signature covers it, so it is read
    # before the sender is authenticated (threat SRV-DOS). A declared length
    # is refused before the database is asked anything.
    request.max_content_length = max_body
    if request.content_length is not None and request.content_length > max_body:
        raise RequestEntityTooLarge(f"the request body exceeds {max_body} bytes")
    _check_clock(headers[HEADER_TIMESTAMP], config.clock_skew)
    identities: IdentityCache = current_app.extensions["pumpguard.device_identities"]
    # The deferred write re-checks the enrollment, so only that path may take
    # it from the cache; a request that records its nonce now reads it in its
    # own transaction.
    device = identities.get(device_id) if not record_nonce else None
    cached = device is not None
    if device is None:
        # The first use of the database: an uncached key must be read before
        # the signature can be checked.
        device = _enrolled(device_id, record_nonce)
    if device is None:
        raise UnauthorizedError(f"device {device_id!r} is not enrolled or was revoked")
    body = request.get_data(cache=True)
    method, path = request.method, signed_request_path()
    try:
        timestamp, nonce = verify_request_signature(
            load_public_key(device.public_key), headers, device_id, method, path, body
        )
    except DeviceAuthError as e:
        if cached:
            # The key may have changed since it was cached (only an edit of
            # the database can do that): the next request reads it again.
            # Not retried now, so a forged request never costs more than one
            # verification and one read (threat SRV-DOS).
            identities.discard(device_id)
        raise UnauthorizedError(str(e)) from e
    if not cached and not record_nonce:
        identities.put(device)
    # Checked again as signed: the early check read an unauthenticated header.
    now = _check_clock(str(timestamp), config.clock_skew)
    seen_at = datetime.fromtimestamp(now, UTC)
    if record_nonce:
        _record_nonce(get_session(), device_id, nonce, seen_at)
    return AuthenticatedDevice(
        device_id, device.product, device.hardware_id, device.public_key, nonce, seen_at
    )


def _signed_headers() -> dict[str, str]:
    """The four signature headers of the request; 401 if one is missing or empty."""
    headers = {name: request.headers.get(name, "") for name in _SIGNED_HEADERS}
    if not headers[HEADER_DEVICE]:
        raise UnauthorizedError(f"the request is not signed (no {HEADER_DEVICE} header)")
    for name, value in headers.items():
        if not value:
            raise UnauthorizedError(f"the request lacks the {name} header")
    return headers


def _check_clock(raw: str, clock_skew: int) -> float:
    """Refuse a timestamp header outside the skew window; returns the server's time.

    Run twice: before the database is used, on the header as received (so
    a request that cannot be fresh costs no connection), and after the
    signature verified, on the signed value. A value the contract would not
    parse passes here and is refused by the verification as malformed.
    """
    now = time.time()
    if not raw.isascii() or not raw.isdigit() or len(raw) > _MAX_TIMESTAMP_DIGITS:
        return now
    # A captured request is only replayable within the skew window, and the
    # window is exactly as long as nonces are kept (threat SRV-REPLAY).
    off = int(raw) - now
    if abs(off) > clock_skew:
        direction = "ahead of" if off > 0 else "behind"
        raise UnauthorizedError(
            f"the request timestamp is {abs(int(off))} s {direction} the server clock"
            f" (at most {clock_skew} s allowed): the device clock is off",
            server_time=int(now),
        )
    return now


@dataclass(frozen=True, slots=True)
class Enrollment:
    """What a device was enrolled with: fixed for the life of its device id.

    Attributes:
        device_id: The device id.
        public_key: Its Ed25519 public key (hex).
        product: Its product.
        hardware_id: Its hardware revision.
    """

    device_id: str
    public_key: str
    product: str
    hardware_id: str


class IdentityCache:
    """Enrollments of recently seen devices, per server process.

    Enrolling a device id a second time is refused, even after revocation
    (``POST /api/v1/devices``), so what a device id was enrolled with never
    changes; only its revocation does, and that is not cached. A check-in
    therefore takes the device's key from here instead of a database read,
    and its one write (``devices._write_checkin``) re-checks, in the same
    statement that records the nonce, that the device is still enrolled with
    that key, product and hardware and not revoked: a revocation refuses the
    very next request (threat SRV-DEVICE-SPOOF). An entry is dropped when that
    re-check fails or its key does not verify a request, so a key changed by
    an edit of the database is read again on the request after.

    Bounded: when full, the oldest entry goes (insertion order), so a flood
    of requests naming many devices costs memory of at most ``size`` entries.
    """

    def __init__(self, size: int = IDENTITY_CACHE_SIZE) -> None:
        self._size = size
        self._entries: dict[str, Enrollment] = {}
        self._lock = threading.Lock()

    def get(self, device_id: str) -> Enrollment | None:
        """The cached enrollment of ``device_id``, if any."""
        return self._entries.get(device_id)

    def put(self, enrollment: Enrollment) -> None:
        """Remember an enrollment just read from the database."""
        with self._lock:
            if enrollment.device_id not in self._entries and len(self._entries) >= self._size:
                self._entries.pop(next(iter(self._entries)))
            self._entries[enrollment.device_id] = enrollment

    def discard(self, device_id: str) -> None:
        """Forget ``device_id`` (its enrollment was found changed or revoked)."""
        with self._lock:
            self._entries.pop(device_id, None)

    def __len__(self) -> int:
        return len(self._entries)


def init_app(app: Flask) -> None:
    """Give ``app`` its cache of device enrollments."""
    app.extensions["pumpguard.device_identities"] = IdentityCache()


def forget_device(device_id: str) -> None:
    """Drop ``device_id`` from this process's cache (a deferred write found it changed)."""
    identities: IdentityCache = current_app.extensions["pumpguard.device_identities"]
    identities.discard(device_id)


def _enrolled(device_id: str, in_session: bool) -> Enrollment | None:
    """The enrollment of an enrolled, unrevoked device, read from the database.

    Read in the request's session transaction when the nonce is recorded
    there too (``in_session``), as before any fast path existed. Otherwise,
    on PostgreSQL, a plain autocommit read (:func:`device_cursor`): no
    transaction is opened for a request that may still be refused, and the
    deferred write re-checks what this read returned.
    """
    cur = None if in_session else device_cursor()
    if cur is not None:
        row = cur.execute(_PG_SELECT_DEVICE, (device_id,)).fetchone()
    else:
        conn = get_session().connection()
        row = conn.execute(_SELECT_DEVICE, {"b_device_id": device_id}).one_or_none()
    return None if row is None else Enrollment(device_id, row[0], row[1], row[2])


def _record_nonce(session: Session, device_id: str, nonce: str, seen_at: datetime) -> None:
    try:
        # Inserted now, so a replay fails here, before the view does any work;
        # the primary key decides races between concurrent copies (SRV-REPLAY).
        session.connection().execute(
            _INSERT_NONCE, {"device_id": device_id, "nonce": nonce, "seen_at": seen_at}
        )
    except IntegrityError as e:
        session.rollback()
        raise replay_error() from e


def replay_error() -> ConflictError:
    """The answer to a nonce this device already used (threat SRV-REPLAY)."""
    return ConflictError("the request was already received (replayed nonce)")


def prune_nonces(session: Session, now: datetime, clock_skew: int) -> int:
    """Delete nonces that can no longer be replayed; returns how many.

    A request stamped ``t`` is accepted while ``|now - t| <= clock_skew``, and
    it was first seen at some ``s`` with ``|s - t| <= clock_skew``; so its last
    acceptable replay is at most ``2 * clock_skew`` after ``s``. Nonces are
    kept that long, plus a second for rounding (threat SRV-REPLAY).
    """
    cutoff = now - timedelta(seconds=2 * clock_skew + 1)
    result = session.execute(delete(DeviceNonce).where(DeviceNonce.seen_at < cutoff))
    count: int = getattr(result, "rowcount", 0) or 0
    return count


@dataclass
class _PruneState:
    due: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _maybe_prune(app: Flask) -> None:
    """Prune expired nonces at most every :data:`PRUNE_INTERVAL` seconds.

    Runs after the view committed, in its own transaction, so a failure here
    (e.g. two workers' prunes deadlocking on PostgreSQL) costs nothing but a
    log line and never fails the device's request.
    """
    state: _PruneState = app.extensions.setdefault("pumpguard.nonce_prune", _PruneState())
    now = time.monotonic()
    if now < state.due or not state.lock.acquire(blocking=False):
        return
    try:
        state.due = now + PRUNE_INTERVAL
        session = get_session()
        config: ServerConfig = app.config["PUMPGUARD"]
        try:
            count = prune_nonces(session, datetime.now(UTC), config.clock_skew)
            session.commit()
        except SQLAlchemyError:
            session.rollback()
            logger.warning("pruning expired device nonces failed; will retry", exc_info=True)
            return
        if count:
            logger.info("pruned %d expired device nonces", count)
    finally:
        state.lock.release()
