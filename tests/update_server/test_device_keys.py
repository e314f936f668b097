"""Device keys: small-order, mixed-order and malformed Ed25519 keys authenticate nothing.

Threat SRV-DEVICE-SPOOF: for a small-order public key (32 zero bytes, say) a
signature with S = 0 verifies, so anyone could check in as that pump without
its key. Such keys are refused at enrollment (400, nothing written) and, when
a row holds one anyway (written before migration 0003 or by an edit of the
database), every request of that device is refused (401). Every test that
uses the ``client``/``app`` fixtures runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import http.client
import json
import secrets
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from flask import Flask
from flask.testing import FlaskClient
from nacl.bindings import crypto_core_ed25519_add, crypto_core_ed25519_is_valid_point
from nacl.exceptions import RuntimeError as NaclRuntimeError
from sqlalchemy import func, select

from pumpguard.device_auth import (
    HEADER_DEVICE,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    DeviceAuthError,
    canonical_request,
)
from repo_support import PRODUCT
from server_support import Pump, checkin_report, live_server
from update_server.device_auth import load_public_key
from update_server.device_keys import (
    SMALL_ORDER_POINTS,
    DeviceKeyError,
    check_public_key,
    check_stored_key,
)
from update_server.models import AuditEntry, Device, DeviceEvent, DeviceNonce

DEVICES = "/api/v1/devices"

IDENTITY = "01" + "00" * 31
ZERO_KEY = "00" * 32

#: The eight points of small order in their canonical encodings, with their order.
SMALL_ORDER: list[tuple[str, str, int]] = [
    ("identity", IDENTITY, 1),
    ("order-2", "ec" + "ff" * 30 + "7f", 2),
    ("order-4-zero-bytes", ZERO_KEY, 4),
    ("order-4-sign-bit", "00" * 31 + "80", 4),
    ("order-8-a", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", 8),
    ("order-8-b", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", 8),
    ("order-8-c", "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", 8),
    ("order-8-d", "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", 8),
]

#: A point's y coordinate is its low 255 bits; p = 2^255 - 19 is ed ff..ff 7f.
NON_CANONICAL: list[tuple[str, str, str]] = [
    ("y-is-p", "ed" + "ff" * 30 + "7f", "its y coordinate is not below 2^255 - 19"),
    ("y-is-p-sign-bit", "ed" + "ff" * 31, "its y coordinate is not below 2^255 - 19"),
    ("y-is-p-plus-1", "ee" + "ff" * 30 + "7f", "its y coordinate is not below 2^255 - 19"),
    ("y-is-p-plus-1-sign-bit", "ee" + "ff" * 31, "its y coordinate is not below 2^255 - 19"),
    ("y-is-2^255-1", "ff" * 31 + "7f", "its y coordinate is not below 2^255 - 19"),
    ("identity-x-0-sign-bit", "01" + "00" * 30 + "80", "x = 0 with the sign bit"),
    ("order-2-x-0-sign-bit", "ec" + "ff" * 31, "x = 0 with the sign bit"),
]

#: y = 2 and y = 7: (y^2 - 1) / (d y^2 + 1) has no square root modulo p
#: (libsodium agrees: test_libsodium_refuses_every_case_of_the_table).
OFF_CURVE: list[tuple[str, str]] = [
    ("y-is-2", "02" + "00" * 31),
    ("y-is-7-sign-bit", "07" + "00" * 30 + "80"),
]


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


#: A real key plus a point of order 2, 4 or 8: on the curve, canonical, not
#: small order, but outside the prime-order subgroup no key generation leaves.
_REAL = raw_public(Ed25519PrivateKey.generate())
MIXED_ORDER: list[tuple[str, str]] = [
    (f"real-key-plus-{name}", crypto_core_ed25519_add(_REAL, bytes.fromhex(point)).hex())
    for name, point, _ in SMALL_ORDER
    if name in ("order-2", "order-4-zero-bytes", "order-8-a")
]
# A point of the curve picked by its encoding, not made as [s]B: y = 3 is
# on the curve but outside the prime-order subgroup.
MIXED_ORDER.append(("point-y-is-3", "03" + "00" * 31))

SMALL_ORDER_WORDS = "small-order point"
#: Every refused key, with words its error message must contain.
REFUSED: list[tuple[str, str, str]] = [
    *[(f"small-{name}", point, SMALL_ORDER_WORDS) for name, point, _ in SMALL_ORDER],
    *[(f"non-canonical-{name}", key, f"not a canonical encoding: {why}")
      for name, key, why in NON_CANONICAL],
    *[(f"off-curve-{name}", key, "not a point on the Ed25519 curve") for name, key in OFF_CURVE],
    *[(f"mixed-{name}", key, "small-order component") for name, key in MIXED_ORDER],
]  # fmt: skip
REFUSED_PARAMS = [pytest.param(key, words, id=case) for case, key, words in REFUSED]


def order(point: bytes) -> int:
    """The order of a curve point, by adding it to itself with libsodium (at most 8)."""
    total, n = point, 1
    while total != bytes.fromhex(IDENTITY):
        total, n = crypto_core_ed25519_add(total, point), n + 1
        assert n <= 8, f"{point.hex()} has no small order"
    return n


def on_curve(point: bytes) -> bool:
    """Whether libsodium decodes ``point`` as a curve point (its add refuses others)."""
    try:
        crypto_core_ed25519_add(point, bytes.fromhex(IDENTITY))
    except NaclRuntimeError:
        return False
    return True


# ------------------------------------------------------- the tables themselves


def test_the_small_order_table_is_exactly_the_eight_torsion_points() -> None:
    # Checked with libsodium, not taken on trust: each point's order, and the
    # group of 8 has one point of order 1, one of order 2, two of order 4
    # and four of order 8.
    points = {bytes.fromhex(point) for _, point, _ in SMALL_ORDER}
    assert points == SMALL_ORDER_POINTS
    for name, point, expected in SMALL_ORDER:
        assert order(bytes.fromhex(point)) == expected, name
    assert Counter(o for _, _, o in SMALL_ORDER) == {1: 1, 2: 1, 4: 2, 8: 4}


@pytest.mark.parametrize(("key", "words"), REFUSED_PARAMS)
def test_libsodium_refuses_every_case_of_the_table(key: str, words: str) -> None:
    raw = bytes.fromhex(key)
    assert not crypto_core_ed25519_is_valid_point(raw)
    if words == "not a point on the Ed25519 curve":
        assert not on_curve(raw)
    if words == "small-order component":
        # On the curve and not small order, but [L]P is not the identity.
        assert on_curve(raw) and raw not in SMALL_ORDER_POINTS


def test_small_order_keys_let_anyone_forge_a_signature_with_s_zero() -> None:
    # Why the refusal matters: OpenSSL (what the server verifies with) takes
    # R = a small-order point, S = 0 as a valid signature by the zero key.
    assert forge_signature(bytes.fromhex(ZERO_KEY), b"any message") is not None


# ------------------------------------------------------------------ the check


@pytest.mark.parametrize(("key", "words"), REFUSED_PARAMS)
def test_check_public_key_names_what_is_wrong(key: str, words: str) -> None:
    with pytest.raises(DeviceKeyError) as refused:
        check_public_key(bytes.fromhex(key))
    assert words in str(refused.value)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_check_public_key_refuses_a_key_of_another_length(length: int) -> None:
    with pytest.raises(DeviceKeyError, match=f"is {length} bytes; an Ed25519 public key is 32"):
        check_public_key(b"\x01" * length)


def test_check_public_key_accepts_generated_keys() -> None:
    for _ in range(200):
        raw = raw_public(Ed25519PrivateKey.generate())
        assert check_public_key(raw).public_bytes_raw() == raw


@pytest.mark.parametrize(
    ("key", "words"), [*REFUSED_PARAMS, pytest.param("zz" * 32, "not hex", id="not-hex")]
)
def test_a_stored_unusable_key_loads_as_an_authentication_failure(key: str, words: str) -> None:
    # ValueError as before, and a DeviceAuthError, which the signed-request
    # check answers with 401.
    with pytest.raises(ValueError) as refused:
        load_public_key(key)
    assert isinstance(refused.value, DeviceAuthError)
    assert str(refused.value).startswith("the stored public key ")
    assert words in str(refused.value)
    with pytest.raises(DeviceAuthError):
        check_stored_key(key)


# ----------------------------------------------------------------- enrollment


def count(app: Flask, model: type[Any]) -> int:
    with app.extensions["pumpguard.db"].begin() as s:
        n: int = s.execute(select(func.count()).select_from(model)).scalar_one()
        return n


@pytest.mark.parametrize(("key", "words"), REFUSED_PARAMS)
def test_enrollment_refuses_an_unusable_key_and_writes_nothing(
    client: FlaskClient, app: Flask, admin_headers: dict[str, str], key: str, words: str
) -> None:
    audit_before = count(app, AuditEntry)
    for spelling in (key, key.upper()):
        r = client.post(DEVICES, json=Pump("pump-0001").enrollment(public_key=spelling),
                        headers=admin_headers)  # fmt: skip
        assert r.status_code == 400, r.json
        message: str = r.json["error"]["message"]  # type: ignore[index]
        assert message.startswith("public_key ") and words in message
    assert count(app, Device) == 0
    assert count(app, AuditEntry) == audit_before


def test_generated_keys_still_enroll_and_check_in(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    for i in range(5):
        pump = Pump(f"pump-{i:04d}")
        r = client.post(DEVICES, json=pump.enrollment(), headers=admin_headers)
        assert r.status_code == 201, r.json
        assert pump.checkin(client).status_code == 200


# ------------------------------------------------------------ the attack, end to end


def forge_signature(public_key: bytes, message: bytes) -> bytes | None:
    """R = a small-order point, S = 0, if OpenSSL accepts it for ``message``."""
    verifier = Ed25519PublicKey.from_public_bytes(public_key)
    for _, point, _ in SMALL_ORDER:
        signature = bytes.fromhex(point) + bytes(32)
        try:
            verifier.verify(signature, message)
        except InvalidSignature:
            continue
        return signature
    return None


def forged_headers(device_id: str, path: str, body: bytes, public_key: bytes) -> dict[str, str]:
    """Signature headers that verify for ``public_key``, made without any private key."""
    timestamp = int(time.time())
    for _ in range(100):  # each nonce succeeds with probability about 2/3
        nonce = secrets.token_hex(16)
        message = canonical_request("POST", path, body, timestamp, nonce, device_id)
        signature = forge_signature(public_key, message)
        if signature is not None:
            return {
                HEADER_DEVICE: device_id,
                HEADER_TIMESTAMP: str(timestamp),
                HEADER_NONCE: nonce,
                HEADER_SIGNATURE: signature.hex(),
            }
    raise AssertionError("no forgery in 100 nonces")


@pytest.mark.parametrize("what", ["checkin", "events"])
def test_a_check_in_forged_for_a_stored_zero_key_is_refused_over_http(
    app: Flask, client: FlaskClient, admin_headers: dict[str, str], what: str
) -> None:
    pump = Pump("pump-0001")
    # The zero key is refused at enrollment ...
    r = client.post(DEVICES, json=pump.enrollment(public_key=ZERO_KEY), headers=admin_headers)
    assert r.status_code == 400 and SMALL_ORDER_WORDS in r.json["error"]["message"]  # type: ignore[index]
    # ... and a row that holds it anyway (older server, database edit)
    # authenticates nothing, on the check-in's fast path and on the events path.
    with app.extensions["pumpguard.db"].begin() as s:
        s.add(Device(device_id=pump.device_id, hardware_id=pump.hardware_id, product=PRODUCT,
                     public_key=ZERO_KEY, status={}))  # fmt: skip
    if what == "checkin":
        body = json.dumps(checkin_report(pump)).encode()
    else:
        body = json.dumps({"events": [{"kind": "check", "at": "2026-01-01T12:00:00Z"}]}).encode()
    path = f"{DEVICES}/{pump.device_id}/{what}"
    with live_server(app) as base:
        url = urlsplit(base)
        for _ in range(3):  # a fresh forgery each time; none is ever cached as good
            headers = forged_headers(pump.device_id, path, body, bytes.fromhex(ZERO_KEY))
            conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
            try:
                conn.request("POST", path, body, {**headers, "Content-Type": "application/json"})
                answer = conn.getresponse()
                status, reply = answer.status, json.loads(answer.read())
            finally:
                conn.close()
            assert status == 401, reply
            assert "stored public key is a small-order point" in reply["error"]["message"]
    with app.extensions["pumpguard.db"].begin() as s:
        device = s.get(Device, pump.device_id)
        assert device is not None and device.last_seen is None and device.status == {}
    assert count(app, DeviceNonce) == 0
    assert count(app, DeviceEvent) == 0
