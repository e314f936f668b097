"""Server side of signed device requests.

A pump signs every request with its enrolled Ed25519 key over the method, the
path with query, the body's sha256, a timestamp and a nonce
(:mod:`pumpguard.device_auth` is the contract both sides import). The server
refuses, in this order:

* a request without signature headers, or signed by another device than the
  one in the URL (401; threat SRV-DEVICE-SPOOF);
* an unknown or revoked device (401);
* a body above the route's limit (413), before anything is parsed;
* a signature that does not verify (401);
* a timestamp more than ``clock_skew`` seconds off the server clock (401 that
  says the clock is off; threat SRV-REPLAY);
* a nonce already seen for this device within the window (409; SRV-REPLAY).

The nonce is inserted in the request's own transaction and the primary key
``(device_id, nonce)`` makes a second insert fail, so two concurrent copies of
one request cannot both pass on PostgreSQL (the second insert waits for the
first transaction and then violates the key) nor on SQLite (writers are
serialised). A request that fails after authentication rolls back with its
nonce; replaying it fails the same way, because the checks that follow depend
only on the signed body and the enrollment.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Flask, current_app, g, request
from sqlalchemy import Connection, bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from pumpguard.device_auth import (
    HEADER_DEVICE,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    DeviceAuthError,
    verify_request_signature,
)
from update_server.config import ServerConfig
from update_server.db import get_session
from update_server.errors import BadRequestError, ConflictError, UnauthorizedError
from update_server.models import Base, DeviceNonce, utcnow

__all__ = [
    "DEVICE_ID_RE",
    "AuthenticatedDevice",
    "current_device",
    "load_public_key",
    "prune_nonces",
    "signed_device_request",
    "signed_request_path",
    "validate_device_id",
]

logger = logging.getLogger(__name__)

#: Device ids: 1-128 of ``[A-Za-z0-9._:-]``, starting with a letter or digit so
#: that an id is never ``.`` or ``..`` inside a URL path.
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

F = TypeVar("F", bound=Callable[..., Any])

_SIGNED_HEADERS = (HEADER_DEVICE, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)

#: Seconds between prunes of expired nonces, per server process.
PRUNE_INTERVAL = 60.0

# The signed-request path runs for every check-in, so it uses Core statements
# built once: SQLAlchemy reuses their compiled form and no ORM unit of work
# runs, which measured at about half the database CPU of the ORM path.
_DEVICES = Base.metadata.tables["devices"]
_SELECT_DEVICE = select(
    _DEVICES.c.public_key, _DEVICES.c.product, _DEVICES.c.hardware_id, _DEVICES.c.revoked_at
).where(_DEVICES.c.device_id == bindparam("b_device_id"))
_INSERT_NONCE = insert(Base.metadata.tables["device_nonces"])


@dataclass(frozen=True)
class AuthenticatedDevice:
    """The enrolled device a signed request came from.

    Attributes:
        device_id: Its device id (equal to the one in the URL).
        product: The product it is enrolled for.
        hardware_id: The hardware revision it is enrolled with.
    """

    device_id: str
    product: str
    hardware_id: str


def validate_device_id(value: object) -> str:
    """Return ``value`` if it is a valid device id.

    Raises:
        BadRequestError: It is not 1-128 letters, digits, ``.``, ``_``, ``:``
            or ``-`` starting with a letter or digit.
    """
    if not isinstance(value, str) or not DEVICE_ID_RE.match(value):
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

    Raises:
        ValueError: ``hex_key`` is not 32 bytes of hex.
    """
    raw = bytes.fromhex(hex_key)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


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


def signed_device_request(max_body: int) -> Callable[[F], F]:
    """Require a request signed by the device named in the URL.

    The view must take a ``device_id`` URL argument. It runs with the device
    in :func:`current_device`, its nonce already recorded in the request's
    transaction, and must commit that transaction itself when it succeeds.

    Args:
        max_body: Largest request body accepted, in bytes (413 above).
    """

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, device_id: str, **kwargs: Any) -> Any:
            g.device = authenticate_device(device_id, max_body)
            rv = view(*args, device_id=device_id, **kwargs)
            _maybe_prune(current_app)
            return rv

        return wrapper  # type: ignore[return-value]

    return decorator


def authenticate_device(device_id: str, max_body: int) -> AuthenticatedDevice:
    """Authenticate the current request as ``device_id`` and record its nonce.

    Args:
        device_id: The device the URL names.
        max_body: Largest request body accepted, in bytes.

    Returns:
        The enrolled device.

    Raises:
        UnauthorizedError: Not signed, signed by another device, unknown or
            revoked device, bad signature, or a stale timestamp.
        ConflictError: The nonce was seen before (a replay).
        RequestEntityTooLarge: The body exceeds ``max_body``.
    """
    config: ServerConfig = current_app.config["PUMPGUARD"]
    claimed = request.headers.get(HEADER_DEVICE)
    if not claimed:
        raise UnauthorizedError(f"the request is not signed (no {HEADER_DEVICE} header)")
    # A device may only act as itself: the signer must be the device in the
    # URL, so one pump's key can never report for another (threat SRV-DEVICE-SPOOF).
    if claimed != device_id:
        raise UnauthorizedError(
            f"the request is signed by device {claimed!r}, not by {device_id!r} in the URL"
        )
    session = get_session()
    conn = session.connection()
    device = None
    if DEVICE_ID_RE.match(device_id):
        device = conn.execute(_SELECT_DEVICE, {"b_device_id": device_id}).one_or_none()
    if device is None or device.revoked_at is not None:
        raise UnauthorizedError(f"device {device_id!r} is not enrolled or was revoked")
    # Bound the body before reading it: the signature covers it, so it is read
    # before the sender is authenticated (threat SRV-DOS).
    request.max_content_length = max_body
    body = request.get_data(cache=True)
    try:
        timestamp, nonce = verify_request_signature(
            load_public_key(device.public_key),
            {name: request.headers.get(name, "") for name in _SIGNED_HEADERS},
            device_id,
            request.method,
            signed_request_path(),
            body,
        )
    except DeviceAuthError as e:
        raise UnauthorizedError(str(e)) from e
    now = time.time()
    # A captured request is only replayable within the skew window, and the
    # window is exactly as long as nonces are kept (threat SRV-REPLAY).
    off = timestamp - now
    if abs(off) > config.clock_skew:
        direction = "ahead of" if off > 0 else "behind"
        raise UnauthorizedError(
            f"the request timestamp is {abs(int(off))} s {direction} the server clock"
            f" (at most {config.clock_skew} s allowed): the device clock is off",
            server_time=int(now),
        )
    _record_nonce(session, conn, device_id, nonce)
    return AuthenticatedDevice(device_id, device.product, device.hardware_id)


def _record_nonce(session: Session, conn: Connection, device_id: str, nonce: str) -> None:
    try:
        # Inserted now, so a replay fails here, before the view does any work;
        # the primary key decides races between concurrent copies (SRV-REPLAY).
        conn.execute(_INSERT_NONCE, {"device_id": device_id, "nonce": nonce, "seen_at": utcnow()})
    except IntegrityError as e:
        session.rollback()
        raise ConflictError("the request was already received (replayed nonce)") from e


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
