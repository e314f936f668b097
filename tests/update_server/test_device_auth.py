"""Signed device requests: forged, tampered, replayed and stale requests are refused.

Threats SRV-DEVICE-SPOOF (a request that is not the enrolled pump's) and
SRV-REPLAY (a captured request sent again). Every test runs on SQLite and on
PostgreSQL through the ``app``/``client`` fixtures.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text
from werkzeug.test import TestResponse

from pumpguard.device_auth import (
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    sign_request,
)
from server_support import Pump, ServerEnv, checkin_report, enroll
from update_server import create_app
from update_server.db import DEVICE_POOL_NAME, dispose
from update_server.device_auth import (
    DEVICE_ID_RE,
    Enrollment,
    IdentityCache,
    prune_nonces,
    validate_device_id,
)
from update_server.errors import BadRequestError
from update_server.models import Device, DeviceNonce, utcnow


def checkin_body(pump: Pump, **changes: Any) -> bytes:
    return json.dumps(checkin_report(pump, **changes)).encode()


def signed_post(
    client: FlaskClient,
    pump: Pump,
    path: str,
    body: bytes,
    *,
    key: Ed25519PrivateKey | None = None,
    signed_path: str | None = None,
    signed_body: bytes | None = None,
    signer_id: str | None = None,
    **sign_kwargs: Any,
) -> TestResponse:
    """POST ``body`` to ``path``, signed (by default correctly) by ``pump``."""
    headers = sign_request(
        key or pump.key,
        signer_id or pump.device_id,
        "POST",
        signed_path or path,
        body if signed_body is None else signed_body,
        **sign_kwargs,
    )
    return client.post(path, data=body, headers=headers, content_type="application/json")


def device_row(app: Flask, device_id: str) -> Device:
    with app.extensions["pumpguard.db"].begin() as s:
        device = s.get(Device, device_id)
        assert device is not None
        return device


def assert_refused(r: TestResponse, status: int, *words: str) -> None:
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.is_json
    message = r.json["error"]["message"]  # type: ignore[index]
    for word in words:
        assert word in message, message


def test_signed_checkin_is_accepted(client: FlaskClient, pump: Pump) -> None:
    r = signed_post(client, pump, pump.checkin_path, checkin_body(pump))
    assert r.status_code == 200, r.json
    assert r.json is not None and r.json["poll_interval"] == 60


def test_unsigned_checkin_is_refused(client: FlaskClient, pump: Pump, app: Flask) -> None:
    r = client.post(pump.checkin_path, data=checkin_body(pump), content_type="application/json")
    assert_refused(r, 401, "not signed")
    assert device_row(app, pump.device_id).last_seen is None


@pytest.mark.parametrize(
    ("drop", "words"),
    [
        (HEADER_SIGNATURE, ("lacks", HEADER_SIGNATURE)),
        (HEADER_NONCE, ("lacks", HEADER_NONCE)),
        (HEADER_TIMESTAMP, ("lacks", HEADER_TIMESTAMP)),
    ],
)
def test_checkin_missing_a_signature_header_is_refused(
    client: FlaskClient, pump: Pump, drop: str, words: tuple[str, ...]
) -> None:
    body = checkin_body(pump)
    headers = sign_request(pump.key, pump.device_id, "POST", pump.checkin_path, body)
    del headers[drop]
    r = client.post(pump.checkin_path, data=body, headers=headers)
    assert_refused(r, 401, *words)


@pytest.mark.parametrize(
    ("header", "value", "words"),
    [
        (HEADER_SIGNATURE, "zz" * 64, ("malformed",)),
        (HEADER_SIGNATURE, "00" * 64, ("does not verify",)),
        (HEADER_TIMESTAMP, "yesterday", ("malformed",)),
        (HEADER_NONCE, "short", ("nonce",)),
        (HEADER_NONCE, "n" * 65, ("nonce",)),
        (HEADER_NONCE, "nonce-with-dashes-0123", ("nonce",)),
    ],
)
def test_checkin_with_malformed_signature_headers_is_refused(
    client: FlaskClient, pump: Pump, header: str, value: str, words: tuple[str, ...]
) -> None:
    body = checkin_body(pump)
    headers = sign_request(pump.key, pump.device_id, "POST", pump.checkin_path, body)
    headers[header] = value
    r = client.post(pump.checkin_path, data=body, headers=headers)
    assert_refused(r, 401, *words)


def test_checkin_signed_with_another_key_is_refused(
    client: FlaskClient, pump: Pump, app: Flask
) -> None:
    r = signed_post(
        client, pump, pump.checkin_path, checkin_body(pump), key=Ed25519PrivateKey.generate()
    )
    assert_refused(r, 401, "does not verify")
    assert device_row(app, pump.device_id).last_seen is None
    assert identities(app).get(pump.device_id) is None  # nothing learnt from a forgery


@pytest.mark.parametrize(
    ("tamper", "sent_path"),
    [
        ("body", None),
        ("path", "/api/v1/devices/pump-0001/events"),
        ("query", "/api/v1/devices/pump-0001/checkin?debug=1"),
    ],
)
def test_tampered_checkin_is_refused(
    client: FlaskClient, pump: Pump, app: Flask, tamper: str, sent_path: str | None
) -> None:
    signed = checkin_body(pump)
    if tamper == "body":
        # A man in the middle lowers the reported counter to get older firmware offered.
        r = signed_post(
            client,
            pump,
            pump.checkin_path,
            checkin_body(pump, release_counter=0),
            signed_body=signed,
        )
    else:
        assert sent_path is not None
        r = signed_post(client, pump, sent_path, signed, signed_path=pump.checkin_path)
    assert_refused(r, 401, "does not verify")
    assert device_row(app, pump.device_id).last_seen is None


def test_query_string_is_part_of_the_signature(client: FlaskClient, pump: Pump) -> None:
    path = pump.checkin_path + "?trace=1"
    assert signed_post(client, pump, path, checkin_body(pump)).status_code == 200


def test_replayed_checkin_is_refused_and_changes_nothing(
    client: FlaskClient, pump: Pump, app: Flask
) -> None:
    body = checkin_body(pump)
    headers = sign_request(pump.key, pump.device_id, "POST", pump.checkin_path, body)
    assert client.post(pump.checkin_path, data=body, headers=headers).status_code == 200
    seen = device_row(app, pump.device_id).last_seen
    r = client.post(pump.checkin_path, data=body, headers=headers)
    assert_refused(r, 409, "replayed")
    assert device_row(app, pump.device_id).last_seen == seen


def test_nonce_reused_with_a_new_signature_is_still_a_replay(
    client: FlaskClient, pump: Pump
) -> None:
    nonce = "a" * 32
    first = signed_post(client, pump, pump.checkin_path, checkin_body(pump), nonce=nonce)
    assert first.status_code == 200
    again = signed_post(
        client, pump, pump.checkin_path, checkin_body(pump, version="1.0.1"), nonce=nonce
    )
    assert_refused(again, 409, "replayed")


def test_same_nonce_from_two_devices_is_not_a_replay(
    client: FlaskClient, pump: Pump, admin_headers: dict[str, str]
) -> None:
    other = Pump("pump-0002")
    enroll(client, admin_headers, other)
    nonce = "b" * 32
    for p in (pump, other):
        r = signed_post(client, p, p.checkin_path, checkin_body(p), nonce=nonce)
        assert r.status_code == 200, r.json


def test_concurrent_replays_cannot_both_pass(app: Flask, pump: Pump) -> None:
    body = checkin_body(pump)
    headers = sign_request(pump.key, pump.device_id, "POST", pump.checkin_path, body)
    copies = 8
    barrier = threading.Barrier(copies)
    statuses: list[int] = []

    def send() -> None:
        client = app.test_client()
        barrier.wait()
        r = client.post(pump.checkin_path, data=body, headers=headers)
        statuses.append(r.status_code)

    threads = [threading.Thread(target=send) for _ in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(statuses) == [200] + [409] * (copies - 1)
    with app.extensions["pumpguard.db"].begin() as s:
        nonces = s.execute(select(DeviceNonce).where(DeviceNonce.device_id == pump.device_id))
        assert len(nonces.all()) == 1


@pytest.mark.parametrize("direction", [-1, 1], ids=["behind", "ahead"])
def test_stale_timestamp_is_refused_with_a_clock_message(
    client: FlaskClient, pump: Pump, app: Flask, direction: int
) -> None:
    skew = app.config["PUMPGUARD"].clock_skew
    stamp = int(time.time()) + direction * (skew + 5)
    r = signed_post(client, pump, pump.checkin_path, checkin_body(pump), timestamp=stamp)
    assert_refused(r, 401, "clock is off", "behind" if direction < 0 else "ahead of")
    assert r.json is not None and abs(r.json["error"]["server_time"] - time.time()) < 60
    assert device_row(app, pump.device_id).last_seen is None


@pytest.mark.parametrize("direction", [-1, 1], ids=["behind", "ahead"])
def test_timestamp_within_the_skew_is_accepted(
    client: FlaskClient, pump: Pump, app: Flask, direction: int
) -> None:
    skew = app.config["PUMPGUARD"].clock_skew
    stamp = int(time.time()) + direction * (skew - 5)
    r = signed_post(client, pump, pump.checkin_path, checkin_body(pump), timestamp=stamp)
    assert r.status_code == 200, r.json


def test_request_signed_by_one_device_for_another_is_refused(
    client: FlaskClient, pump: Pump, admin_headers: dict[str, str], app: Flask
) -> None:
    victim = Pump("pump-0002")
    enroll(client, admin_headers, victim)
    # pump signs correctly as itself but posts to the victim's URL ...
    r = signed_post(
        client,
        pump,
        victim.checkin_path,
        checkin_body(victim),
        signer_id=pump.device_id,
    )
    assert_refused(r, 401, "signed by device 'pump-0001'", "'pump-0002'")
    # ... or claims to be the victim with its own key.
    r = signed_post(client, victim, victim.checkin_path, checkin_body(victim), key=pump.key)
    assert_refused(r, 401, "does not verify")
    assert device_row(app, victim.device_id).last_seen is None


@pytest.mark.parametrize(
    "device_id",
    [
        pytest.param("pump-0001\n", id="trailing-newline"),
        pytest.param("p" * 128 + "\n", id="longest-id-then-newline"),
    ],
)
def test_a_device_id_followed_by_a_newline_is_not_a_device_id(device_id: str) -> None:
    # `$` matches before a final newline: such an id was enrolled, or on
    # PostgreSQL overflowed its column. DEVICE_ID_RE is exported, so even a
    # caller's .match must refuse it.
    assert DEVICE_ID_RE.match(device_id) is None
    with pytest.raises(BadRequestError, match="device_id"):
        validate_device_id(device_id)


def test_unknown_device_is_refused(client: FlaskClient) -> None:
    stranger = Pump("pump-9999")
    r = signed_post(client, stranger, stranger.checkin_path, checkin_body(stranger))
    assert_refused(r, 401, "not enrolled")


def test_revoked_device_is_refused(
    client: FlaskClient, pump: Pump, admin_headers: dict[str, str]
) -> None:
    assert signed_post(client, pump, pump.checkin_path, checkin_body(pump)).status_code == 200
    r = client.delete(f"/api/v1/devices/{pump.device_id}", headers=admin_headers)
    assert r.status_code == 200
    r = signed_post(client, pump, pump.checkin_path, checkin_body(pump))
    assert_refused(r, 401, "revoked")
    events = {"events": [{"kind": "check", "at": "2026-01-01T00:00:00Z"}]}
    path = f"/api/v1/devices/{pump.device_id}/events"
    assert_refused(signed_post(client, pump, path, json.dumps(events).encode()), 401, "revoked")


def test_device_revoked_while_its_checkin_is_processed_is_refused_and_nothing_is_written(
    client: FlaskClient, pump: Pump, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The enrollment is read before the signature is checked, outside the
    # write's transaction; the write re-checks it, so a revocation that lands
    # in between refuses the request and leaves no nonce or state behind.
    from update_server import devices

    load = devices._candidates

    def revoke_then_load(product: str, counter: int) -> Any:
        with app.extensions["pumpguard.db"].begin() as s:
            device = s.get(Device, pump.device_id)
            assert device is not None
            device.revoked_at = utcnow()
        return load(product, counter)

    monkeypatch.setattr(devices, "_candidates", revoke_then_load)
    r = signed_post(client, pump, pump.checkin_path, checkin_body(pump))
    assert_refused(r, 401, "revoked")
    assert device_row(app, pump.device_id).last_seen is None
    with app.extensions["pumpguard.db"].begin() as s:
        assert s.execute(select(DeviceNonce)).all() == []


def test_a_refused_checkin_leaves_its_nonce_unused_and_a_replay_is_refused_alike(
    client: FlaskClient, pump: Pump, app: Flask
) -> None:
    body = checkin_body(pump, product="other-pump")
    headers = sign_request(pump.key, pump.device_id, "POST", pump.checkin_path, body)
    for _ in range(2):
        assert_refused(client.post(pump.checkin_path, data=body, headers=headers), 409, "product")
    with app.extensions["pumpguard.db"].begin() as s:
        assert s.execute(select(DeviceNonce)).all() == []


def test_a_checkin_records_exactly_its_nonce(client: FlaskClient, pump: Pump, app: Flask) -> None:
    nonce = "c" * 32
    r = signed_post(client, pump, pump.checkin_path, checkin_body(pump), nonce=nonce)
    assert r.status_code == 200, r.json
    with app.extensions["pumpguard.db"].begin() as s:
        rows = s.execute(select(DeviceNonce.device_id, DeviceNonce.nonce)).all()
    assert [tuple(row) for row in rows] == [(pump.device_id, nonce)]


def test_oversized_signed_body_is_refused_before_parsing(client: FlaskClient, pump: Pump) -> None:
    body = checkin_body(pump, padding="x" * 20000)
    r = signed_post(client, pump, pump.checkin_path, body)
    assert r.status_code == 413
    assert r.is_json


def test_prune_keeps_nonces_while_a_replay_could_still_be_fresh(app: Flask, pump: Pump) -> None:
    skew = app.config["PUMPGUARD"].clock_skew
    now = utcnow()
    ages = {"fresh": 10, "edge": 2 * skew - 10, "expired": 2 * skew + 10}
    with app.extensions["pumpguard.db"].begin() as s:
        for name, age in ages.items():
            s.add(
                DeviceNonce(
                    device_id=pump.device_id,
                    nonce=name.ljust(16, "0"),
                    seen_at=now - timedelta(seconds=age),
                )
            )
    with app.extensions["pumpguard.db"].begin() as s:
        assert prune_nonces(s, now, skew) == 1
    with app.extensions["pumpguard.db"].begin() as s:
        left = set(s.execute(select(DeviceNonce.nonce)).scalars())
    assert left == {"fresh".ljust(16, "0"), "edge".ljust(16, "0")}


def test_expired_nonces_are_pruned_by_signed_requests(
    app: Flask, client: FlaskClient, pump: Pump
) -> None:
    skew = app.config["PUMPGUARD"].clock_skew
    with app.extensions["pumpguard.db"].begin() as s:
        s.add(
            DeviceNonce(
                device_id=pump.device_id,
                nonce="old".ljust(16, "0"),
                seen_at=utcnow() - timedelta(seconds=3 * skew),
            )
        )
    # The first signed request of a process prunes.
    assert signed_post(client, pump, pump.checkin_path, checkin_body(pump)).status_code == 200
    with app.extensions["pumpguard.db"].begin() as s:
        left = list(s.execute(select(DeviceNonce.nonce)).scalars())
    assert len(left) == 1 and not left[0].startswith("old")


# ------------------------------------------------- cached enrollments


def identities(app: Flask) -> IdentityCache:
    cache: IdentityCache = app.extensions["pumpguard.device_identities"]
    return cache


def test_revoked_device_is_refused_although_its_enrollment_is_cached(
    client: FlaskClient, pump: Pump, app: Flask
) -> None:
    # The check-in takes the pump's key from the process's cache; the write
    # re-checks the revocation, so the very next request is refused
    # (SRV-DEVICE-SPOOF), nothing is written and the entry is dropped.
    assert signed_post(client, pump, pump.checkin_path, checkin_body(pump)).status_code == 200
    assert identities(app).get(pump.device_id) is not None
    before = device_row(app, pump.device_id).last_seen
    with app.extensions["pumpguard.db"].begin() as s:
        device = s.get(Device, pump.device_id)
        assert device is not None
        device.revoked_at = utcnow()  # as another server process would
    nonce = "d" * 32
    r = signed_post(client, pump, pump.checkin_path, checkin_body(pump), nonce=nonce)
    assert_refused(r, 401, "revoked")
    assert device_row(app, pump.device_id).last_seen == before
    with app.extensions["pumpguard.db"].begin() as s:
        assert s.get(DeviceNonce, (pump.device_id, nonce)) is None
    assert identities(app).get(pump.device_id) is None
    # Refused again from the database, and not cached.
    assert_refused(signed_post(client, pump, pump.checkin_path, checkin_body(pump)), 401, "revoked")
    assert identities(app).get(pump.device_id) is None


def test_a_key_changed_in_the_database_replaces_the_cached_one_after_one_refusal(
    client: FlaskClient, pump: Pump, app: Flask
) -> None:
    # Enrollment never changes a device's key; an operator's repair in the
    # database does. The cached old key refuses the new key once (no second
    # verification for a request that failed one), then the new key is read;
    # the old key is refused from then on.
    assert signed_post(client, pump, pump.checkin_path, checkin_body(pump)).status_code == 200
    old_key, new_key = pump.key, Ed25519PrivateKey.generate()
    with app.extensions["pumpguard.db"].begin() as s:
        device = s.get(Device, pump.device_id)
        assert device is not None
        device.public_key = Pump(pump.device_id, key=new_key).public_hex
    r = signed_post(client, pump, pump.checkin_path, checkin_body(pump), key=new_key)
    assert_refused(r, 401, "does not verify")
    assert identities(app).get(pump.device_id) is None
    r = signed_post(client, pump, pump.checkin_path, checkin_body(pump), key=new_key)
    assert r.status_code == 200, r.json
    r = signed_post(client, pump, pump.checkin_path, checkin_body(pump), key=old_key)
    assert_refused(r, 401, "does not verify")


def test_identity_cache_is_bounded_and_drops_the_oldest_entry() -> None:
    cache = IdentityCache(size=3)
    for i in range(5):
        cache.put(Enrollment(f"pump-{i}", "ab" * 32, "p", "rev-b"))
    assert len(cache) == 3
    assert [cache.get(f"pump-{i}") is not None for i in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]
    cache.put(Enrollment("pump-3", "cd" * 32, "p", "rev-b"))  # replacing does not evict
    assert len(cache) == 3
    cache.discard("pump-3")
    cache.discard("pump-3")
    assert len(cache) == 2


# --------------------------------------------- the check-ins' own connections


def checkin_backends(app: Flask) -> set[int]:
    """PostgreSQL backends of the app's check-in pool (threat SRV-DOS)."""
    with app.extensions["pumpguard.db"].begin() as s:
        rows = s.execute(
            text(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = :name"
            ),
            {"name": DEVICE_POOL_NAME},
        )
        return {int(pid) for (pid,) in rows}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_broken_device_connection_answers_503_and_is_replaced(
    client: FlaskClient, pump: Pump, app: Flask
) -> None:
    # The database restarted (here: the pool's backend is terminated) while
    # the check-in connection was idle in the pool: that request gets a 503
    # to retry with nothing written, and the next one runs on a new
    # connection.
    assert signed_post(client, pump, pump.checkin_path, checkin_body(pump)).status_code == 200
    (pid,) = checkin_backends(app)
    with app.extensions["pumpguard.db"].begin() as s:
        assert s.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    before = device_row(app, pump.device_id).last_seen
    r = signed_post(client, pump, pump.checkin_path, checkin_body(pump))
    assert r.status_code == 503, r.get_data(as_text=True)
    assert r.json is not None and r.json["error"]["code"] == "database_unavailable"
    assert r.headers["Retry-After"].isdigit()
    assert device_row(app, pump.device_id).last_seen == before
    r = signed_post(client, pump, pump.checkin_path, checkin_body(pump))
    assert r.status_code == 200, r.json
    # The pool replaced the broken connection (a replacement and the one the
    # request waited for may both open), within its size.
    fresh = checkin_backends(app) - {pid}
    assert 1 <= len(fresh) <= app.config["PUMPGUARD"].db_pool_size


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_checkins_share_a_pool_of_at_most_its_size(server_env: ServerEnv) -> None:
    # Before, each server thread opened a check-in connection of its own and
    # kept it forever; now they take one from a pool of db_pool_size and
    # give it back when the request ends.
    app = create_app(server_env.config(db_pool_size=2))
    try:
        client = app.test_client()
        admin = {"Authorization": f"Bearer {server_env.admin_token}"}
        pumps = [Pump(f"pump-{i:04d}") for i in range(6)]
        for p in pumps:
            enroll(client, admin, p)
        barrier = threading.Barrier(len(pumps))
        statuses: list[int] = []

        def check_in(p: Pump) -> None:
            own = app.test_client()
            barrier.wait()
            statuses.append(signed_post(own, p, p.checkin_path, checkin_body(p)).status_code)

        threads = [threading.Thread(target=check_in, args=(p,)) for p in pumps]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert statuses == [200] * len(pumps)
        assert 1 <= len(checkin_backends(app)) <= 2
    finally:
        dispose(app)
