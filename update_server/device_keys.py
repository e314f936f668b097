"""Which Ed25519 public keys a pump may be enrolled with (threat SRV-DEVICE-SPOOF).

Ed25519 verification checks ``[S]B == R + [k]A`` for the signer's key ``A``.
When ``A`` has small order (the eight points of order 1, 2, 4 or 8, such as
the 32 zero bytes), ``[k]A`` is one of those eight points whatever the
message, so ``S = 0`` with ``R`` a small-order point verifies for most
messages: anyone can sign as such a pump without any secret. Parsing the key
(OpenSSL, ``Ed25519PublicKey.from_public_bytes``) refuses none of the keys
refused here, not even points off the curve, so every key is checked here:
at enrollment, at every check-in (``device_auth.load_public_key``) and by
migration 0003 for the keys already stored.

The decision is libsodium's ``crypto_core_ed25519_is_valid_point`` (through
PyNaCl): the encoding is canonical (``y < p``), the point is on the curve, not
of small order, and in the prime-order subgroup. The last refuses
mixed-order keys too (a real key plus a small-order point): an honest key is
``[s]B`` for its secret scalar ``s``, always in the prime-order subgroup, so
such a key was made on purpose; its small-order part makes which signatures
verify depend on the verifier (cofactored or not) and lets one signature
verify for several keys. The message that says what is wrong is worked out
here, only once libsodium has refused the key.
"""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.bindings import crypto_core_ed25519_is_valid_point

from pumpguard.device_auth import DeviceAuthError
from update_server.errors import ServerError

__all__ = [
    "SMALL_ORDER_POINTS",
    "DeviceKeyError",
    "StoredDeviceKeyError",
    "check_public_key",
    "check_stored_key",
]

#: The field prime of Curve25519, ``2**255 - 19``.
_P = 2**255 - 19
#: The curve constant ``d = -121665 / 121666`` of edwards25519.
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SIGN_BIT = 1 << 255

#: The canonical encodings of the eight points of small order (1, 2, 4, 4
#: and four of order 8); tests/update_server/test_device_keys.py checks each
#: order with libsodium.
SMALL_ORDER_POINTS = frozenset(
    bytes.fromhex(h)
    for h in (
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    )
)


class DeviceKeyError(ServerError, ValueError):
    """A public key no pump may be enrolled with; the message says why.

    Also a ValueError, which is what a key that does not parse has always
    raised (``device_auth.load_public_key``).
    """


class StoredDeviceKeyError(DeviceKeyError, DeviceAuthError):
    """An enrolled device's stored key is unusable: none of its requests verifies.

    Also a :class:`~pumpguard.device_auth.DeviceAuthError`, so the signed-request
    check answers it as a signature that does not verify (401), as it must
    for a key written before migration 0003 or by an edit of the database.
    """


@functools.lru_cache(maxsize=256)
def _why_refused(raw: bytes) -> str:
    """What is wrong with a 32-byte key that libsodium refused.

    Cached: a stored key refused at every request of its device costs the
    curve arithmetic below (0.2-0.3 ms) once, not per request (threat
    SRV-DOS); only a database edit can store such keys, so they are few.
    """
    value = int.from_bytes(raw, "little")
    y = value & (_SIGN_BIT - 1)
    if y >= _P:
        return "is not a canonical encoding: its y coordinate is not below 2^255 - 19"
    # x = 0 exactly when y = 1 or y = -1; zero has no negative, so no sign bit.
    if y in (1, _P - 1) and value & _SIGN_BIT:
        return "is not a canonical encoding: x = 0 with the sign bit set"
    if raw in SMALL_ORDER_POINTS:
        return (
            "is a small-order point: a signature with S = 0 verifies for it,"
            " made by anyone, without any secret key"
        )
    # On the curve when x^2 = (y^2 - 1) / (d y^2 + 1) is a square modulo p
    # (Euler's criterion); y = +-1 were handled above, so x^2 is not 0.
    x2 = (y * y - 1) * pow(_D * y * y + 1, -1, _P) % _P
    if pow(x2, (_P - 1) // 2, _P) != 1:
        return "is not a point on the Ed25519 curve"
    return (
        "has a small-order component (a point outside the prime-order subgroup,"
        " which no Ed25519 key generation makes)"
    )


def check_public_key(raw: bytes) -> Ed25519PublicKey:
    """The key object of ``raw`` if a pump may be enrolled with it.

    Args:
        raw: A raw Ed25519 public key.

    Returns:
        The key, ready to verify the pump's signatures.

    Raises:
        DeviceKeyError: ``raw`` is not 32 bytes, not a canonical encoding, not
            on the curve, of small order or outside the prime-order subgroup
            (the message says which).
    """
    if len(raw) != 32:
        raise DeviceKeyError(f"is {len(raw)} bytes; an Ed25519 public key is 32 bytes")
    if not crypto_core_ed25519_is_valid_point(raw):
        raise DeviceKeyError(_why_refused(raw))
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as e:  # not seen for a point libsodium accepts; kept exact
        raise DeviceKeyError(f"is not an Ed25519 public key: {e}") from e


def check_stored_key(hex_key: str) -> Ed25519PublicKey:
    """The key object of a stored key (hex) if it is one a pump may have.

    Args:
        hex_key: ``devices.public_key`` as stored.

    Returns:
        The key.

    Raises:
        StoredDeviceKeyError: ``hex_key`` is not hex, or
            :func:`check_public_key` refuses its bytes.
    """
    try:
        raw = bytes.fromhex(hex_key)
    except ValueError as e:
        raise StoredDeviceKeyError("the stored public key is not hex") from e
    try:
        return check_public_key(raw)
    except DeviceKeyError as e:
        raise StoredDeviceKeyError(f"the stored public key {e}") from e
