"""The signed-request contract between a pump and the server.

Every device request carries an Ed25519 signature by the pump's enrolled key
over :func:`canonical_request`: the method, the path (with query), the sha256
of the body, a timestamp and a random nonce. The server refuses a bad
signature, a timestamp outside its clock-skew window and a nonce it has seen
(replay). Both sides import this module, so the format cannot drift.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pumpguard.errors import PumpguardError

__all__ = [
    "HEADER_DEVICE",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "MAX_TIMESTAMP",
    "DeviceAuthError",
    "canonical_request",
    "sign_request",
    "verify_request_signature",
]

HEADER_DEVICE = "X-Pumpguard-Device"
HEADER_TIMESTAMP = "X-Pumpguard-Timestamp"
HEADER_NONCE = "X-Pumpguard-Nonce"
HEADER_SIGNATURE = "X-Pumpguard-Signature"
_SCHEME = b"pumpguard-device-request-v1"
#: The latest timestamp a request may carry: 9999-12-31T23:59:59Z, the last
#: second a :class:`datetime.datetime` can hold. Any accepted timestamp is
#: exact as a float (below 2**53) and converts to a datetime, so no check on
#: it can overflow; no real clock is anywhere near it.
MAX_TIMESTAMP = 253_402_300_799
# Whole seconds as sign_request writes them: ASCII digits, no sign, no
# spaces, no leading zero (int() also takes "+5", " 5", "5_0" and the
# digits of other scripts).
_TIMESTAMP_RE = re.compile(r"0|[1-9][0-9]{0,11}")


class DeviceAuthError(PumpguardError):
    """A device request's signature headers are missing or do not verify."""

    exit_code = 4


def canonical_request(
    method: str, path: str, body: bytes, timestamp: int, nonce: str, device_id: str
) -> bytes:
    """The exact bytes a device signs for one request."""
    return b"\n".join(
        [
            _SCHEME,
            device_id.encode(),
            method.upper().encode(),
            path.encode(),
            hashlib.sha256(body).hexdigest().encode(),
            str(timestamp).encode(),
            nonce.encode(),
        ]
    )


def sign_request(
    key: Ed25519PrivateKey,
    device_id: str,
    method: str,
    path: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that authenticate one request by ``device_id``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = nonce or secrets.token_hex(16)
    signature = key.sign(canonical_request(method, path, body, timestamp, nonce, device_id))
    return {
        HEADER_DEVICE: device_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: signature.hex(),
    }


def verify_request_signature(
    public_key: Ed25519PublicKey,
    headers: Mapping[str, str],
    device_id: str,
    method: str,
    path: str,
    body: bytes,
) -> tuple[int, str]:
    """Check a request's signature; freshness and replay are the server's part.

    Returns:
        The request's timestamp and nonce.

    Raises:
        DeviceAuthError: A header is missing or malformed, names another
            device, or the signature does not verify.
    """
    values = {}
    for name in (HEADER_DEVICE, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE):
        value = headers.get(name)
        if not value:
            raise DeviceAuthError(f"the request lacks the {name} header")
        values[name] = value
    if values[HEADER_DEVICE] != device_id:
        raise DeviceAuthError(f"the request is signed for device {values[HEADER_DEVICE]!r}")
    raw_timestamp = values[HEADER_TIMESTAMP]
    if not _TIMESTAMP_RE.fullmatch(raw_timestamp) or int(raw_timestamp) > MAX_TIMESTAMP:
        raise DeviceAuthError(
            f"the {HEADER_TIMESTAMP} header is malformed: it must be whole seconds since"
            f" 1970 in ASCII digits, at most {MAX_TIMESTAMP}"
        )
    timestamp = int(raw_timestamp)
    try:
        signature = bytes.fromhex(values[HEADER_SIGNATURE])
    except ValueError as e:
        raise DeviceAuthError(f"the {HEADER_SIGNATURE} header is malformed: not hex") from e
    nonce = values[HEADER_NONCE]
    if not 16 <= len(nonce) <= 64 or not nonce.isascii() or not nonce.isalnum():
        raise DeviceAuthError("the nonce must be 16-64 ASCII letters or digits")
    try:
        public_key.verify(
            signature, canonical_request(method, path, body, timestamp, nonce, device_id)
        )
    except InvalidSignature as e:
        raise DeviceAuthError("the request signature does not verify") from e
    return timestamp, nonce
