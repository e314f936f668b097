"""Devices: enrollment, check-in content and assignment, events, listing, CLI.

Every test runs on SQLite and on PostgreSQL through the ``app``/``client``
fixtures. Signature checks themselves are in test_device_auth.py.
"""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, event, func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.test import TestResponse

from repo_support import PRODUCT, CliResult, RepoEnv
from server_support import Pump, ServerEnv, checkin_report, enroll, live_server
from signer import Repository, publish_bundle
from update_server.assignment import DeviceFacts, choose_release
from update_server.audit import verify_chain
from update_server.auth import create_token
from update_server.datadir import sync_release_index
from update_server.models import AuditEntry, Device, DeviceEvent, Release

DEVICES = "/api/v1/devices"
TAR = "application/x-tar"


@pytest.fixture
def token_headers(app: Flask) -> Callable[..., dict[str, str]]:
    """Authorization headers for a new token of a role."""

    def make(role: str, products: Sequence[str] = ()) -> dict[str, str]:
        with app.extensions["pumpguard.db"].begin() as s:
            _, secret = create_token(s, f"test-{role}", role, products)
        return {"Authorization": f"Bearer {secret}"}

    return make


def error_message(r: TestResponse) -> str:
    assert r.is_json, r.get_data(as_text=True)
    message: str = r.json["error"]["message"]  # type: ignore[index]
    return message


def count(app: Flask, model: type[Any]) -> int:
    with app.extensions["pumpguard.db"].begin() as s:
        n: int = s.execute(select(func.count()).select_from(model)).scalar_one()
        return n


def device_row(app: Flask, device_id: str) -> Device:
    with app.extensions["pumpguard.db"].begin() as s:
        device = s.get(Device, device_id)
        assert device is not None
        return device


def add_release(
    app: Flask, version: str, counter: int, hardware_ids: Sequence[str] = ("rev-b",)
) -> None:
    with app.extensions["pumpguard.db"].begin() as s:
        s.add(
            Release(
                product=PRODUCT,
                version=version,
                release_counter=counter,
                hardware_ids=list(hardware_ids),
                firmware_path=f"{PRODUCT}/{version}/firmware.img",
                firmware_sha256="ab" * 32,
                firmware_length=4096,
                sbom_path=f"{PRODUCT}/{version}/sbom.cdx.json",
            )
        )


# ------------------------------------------------------------------ enrollment


@pytest.mark.parametrize(
    ("role", "status"),
    [
        (None, 401),
        ("reviewer", 403),
        ("release-engineer", 403),
        ("operator", 201),
        ("admin", 201),
    ],
)
def test_enrollment_needs_an_admin_or_operator_token(
    client: FlaskClient,
    app: Flask,
    token_headers: Callable[..., dict[str, str]],
    role: str | None,
    status: int,
) -> None:
    headers = {}
    if role is not None:
        headers = token_headers(role, [PRODUCT] if role == "release-engineer" else [])
    r = client.post(DEVICES, json=Pump("pump-0001").enrollment(), headers=headers)
    assert r.status_code == status, r.json
    assert count(app, Device) == (1 if status == 201 else 0)


def test_enrollment_with_a_revoked_token_is_refused(
    client: FlaskClient, app: Flask, token_headers: Callable[..., dict[str, str]]
) -> None:
    from update_server.auth import revoke_token
    from update_server.models import ApiToken

    headers = token_headers("operator")
    with app.extensions["pumpguard.db"].begin() as s:
        token = s.execute(select(ApiToken).where(ApiToken.role == "operator")).scalar_one()
        revoke_token(s, token.id)
    r = client.post(DEVICES, json=Pump("pump-0001").enrollment(), headers=headers)
    assert r.status_code == 401


GOOD = Pump("pump-0001")

BAD_ENROLLMENTS: list[tuple[str, bytes | dict[str, Any], str]] = [
    ("not-json", b"{device_id: 1}", "not valid JSON"),
    ("not-utf8", b'{"device_id": "\xff"}', "not UTF-8"),
    ("array", b"[]", "must be a JSON object"),
    ("duplicate-key", b'{"device_id": "a", "device_id": "b"}', "duplicate key"),
    ("nan", b'{"device_id": NaN}', "NaN is not JSON"),
    ("missing-field", {"device_id": "pump-1"}, "lacks field(s): hardware_id, product"),
    ("unknown-field", GOOD.enrollment(role="admin"), "unknown field(s): role"),
    ("device-id-space", GOOD.enrollment(device_id="pump 1"), "device_id"),
    ("device-id-slash", GOOD.enrollment(device_id="pump/1"), "device_id"),
    ("device-id-dotdot", GOOD.enrollment(device_id=".."), "device_id"),
    ("device-id-empty", GOOD.enrollment(device_id=""), "device_id"),
    ("device-id-too-long", GOOD.enrollment(device_id="p" * 129), "device_id"),
    ("device-id-number", GOOD.enrollment(device_id=17), "device_id"),
    ("hardware-id-bad", GOOD.enrollment(hardware_id="rev b"), "hardware id"),
    ("hardware-id-null", GOOD.enrollment(hardware_id=None), "hardware id"),
    ("product-upper", GOOD.enrollment(product="Sigma"), "lower-case"),
    ("product-reserved", GOOD.enrollment(product="root"), "reserved"),
    ("product-not-delegated", GOOD.enrollment(product="other-pump"), "not delegated"),
    ("key-short", GOOD.enrollment(public_key="ab" * 31), "64 hex digits"),
    ("key-not-hex", GOOD.enrollment(public_key="zz" * 32), "64 hex digits"),
    ("key-pem", GOOD.enrollment(public_key="-----BEGIN PUBLIC KEY-----"), "64 hex digits"),
    ("key-number", GOOD.enrollment(public_key=7), "64 hex digits"),
    # `$` also matches before a final newline: these were stored (SQLite) or
    # overflowed the column (PostgreSQL, a 500).
    ("device-id-trailing-newline", GOOD.enrollment(device_id="pump-1\n"), "device_id"),
    ("device-id-128-then-newline", GOOD.enrollment(device_id="p" * 128 + "\n"), "device_id"),
    ("key-trailing-newline", GOOD.enrollment(public_key=GOOD.public_hex + "\n"), "64 hex digits"),
]


@pytest.mark.parametrize(
    ("body", "words"),
    [pytest.param(b, w, id=i) for i, b, w in BAD_ENROLLMENTS],
)
def test_bad_enrollment_is_refused_with_a_message(
    client: FlaskClient,
    app: Flask,
    admin_headers: dict[str, str],
    body: bytes | dict[str, Any],
    words: str,
) -> None:
    audit_before = count(app, AuditEntry)
    if isinstance(body, bytes):
        r = client.post(DEVICES, data=body, headers=admin_headers, content_type="application/json")
    else:
        r = client.post(DEVICES, json=body, headers=admin_headers)
    assert r.status_code == 400, r.json
    assert words in error_message(r)
    assert count(app, Device) == 0
    assert count(app, AuditEntry) == audit_before


def test_oversized_enrollment_is_refused(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    r = client.post(DEVICES, json=GOOD.enrollment(notes="x" * 5000), headers=admin_headers)
    assert r.status_code == 413
    assert r.is_json


def test_enrollment_is_returned_audited_and_the_chain_verifies(
    client: FlaskClient, app: Flask, admin_headers: dict[str, str]
) -> None:
    pumps = [Pump(f"pump-{i:04d}") for i in range(3)]
    for p in pumps:
        r = client.post(
            DEVICES, json=p.enrollment(public_key=p.public_hex.upper()), headers=admin_headers
        )
        assert r.status_code == 201
        assert r.headers["Location"] == f"{DEVICES}/{p.device_id}"
        assert r.json is not None
        assert r.json["public_key"] == p.public_hex  # stored lower-case
        assert r.json["product"] == PRODUCT and r.json["revoked_at"] is None
    r = client.delete(f"{DEVICES}/{pumps[0].device_id}", headers=admin_headers)
    assert r.status_code == 200
    with app.extensions["pumpguard.db"].begin() as s:
        report = verify_chain(s)
        entries = list(s.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars())
    assert report.entries == len(entries)
    assert [e.action for e in entries[-4:]] == ["device.enroll"] * 3 + ["device.revoke"]
    assert entries[-2].detail["device_id"] == "pump-0002"
    assert entries[-2].detail["public_key"] == pumps[2].public_hex
    assert entries[-2].actor.startswith("token:")


def test_duplicate_enrollment_is_a_conflict(
    client: FlaskClient, app: Flask, admin_headers: dict[str, str], pump: Pump
) -> None:
    again = client.post(DEVICES, json=pump.enrollment(), headers=admin_headers)
    assert again.status_code == 409
    assert "already enrolled" in error_message(again)
    # The same key for a second pump would let one extracted key speak for both.
    twin = client.post(DEVICES, json=pump.enrollment(device_id="pump-0002"), headers=admin_headers)
    assert twin.status_code == 409
    assert "already enrolled for device 'pump-0001'" in error_message(twin)
    assert count(app, Device) == 1


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(lambda k: k + "\n", id="trailing-newline"),
        pytest.param(lambda k: k.upper() + "\n", id="upper-case-trailing-newline"),
    ],
)
def test_a_second_spelling_of_an_enrolled_key_cannot_enroll_a_twin_pump(
    client: FlaskClient,
    app: Flask,
    admin_headers: dict[str, str],
    pump: Pump,
    spelling: Callable[[str], str],
) -> None:
    # bytes.fromhex ignores the newline: a twin enrolled this way would let
    # one extracted key speak for both pumps (SRV-DEVICE-SPOOF).
    twin = Pump("pump-0002", key=pump.key)
    r = client.post(
        DEVICES, json=twin.enrollment(public_key=spelling(pump.public_hex)), headers=admin_headers
    )
    assert r.status_code == 400, r.json
    assert "64 hex digits" in error_message(r)
    assert count(app, Device) == 1
    assert twin.checkin(client).status_code == 401


def _commit_before_the_enrollment_insert(app: Flask, row: dict[str, Any]) -> Callable[..., None]:
    """Commit ``row`` into devices just before the next enrollment inserts its own.

    Both existence checks of the enrollment have then passed: only the
    database's constraints can refuse the insert. Returns the listener, for
    ``event.remove``.
    """
    engine = app.extensions["pumpguard.engine"]
    done: list[bool] = []

    def overtake(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if done or not statement.lstrip().upper().startswith("INSERT INTO DEVICES"):
            return
        done.append(True)
        with app.extensions["pumpguard.db"].begin() as s:
            s.add(Device(hardware_id="rev-b", product=PRODUCT, status={}, **row))

    event.listen(engine, "before_cursor_execute", overtake)
    return overtake


def test_an_enrollment_overtaken_by_a_committed_twin_is_a_conflict_naming_key_or_id(
    client: FlaskClient, app: Flask, admin_headers: dict[str, str]
) -> None:
    pump = Pump("pump-0001")
    cases = [
        # Another device id with this pump's key: the unique index refuses it.
        (
            {"device_id": "pump-twin", "public_key": pump.public_hex},
            "this public key is already enrolled for device 'pump-twin'",
        ),
        # This pump's id with another key: the primary key refuses it.
        (
            {"device_id": pump.device_id, "public_key": Pump("x").public_hex},
            f"device {pump.device_id!r} is already enrolled",
        ),
    ]
    engine = app.extensions["pumpguard.engine"]
    for row, words in cases:
        with app.extensions["pumpguard.db"].begin() as s:
            s.execute(delete(Device))
        audited = count(app, AuditEntry)
        overtake = _commit_before_the_enrollment_insert(app, row)
        try:
            r = client.post(DEVICES, json=pump.enrollment(), headers=admin_headers)
        finally:
            event.remove(engine, "before_cursor_execute", overtake)
        assert r.status_code == 409, r.json
        assert words in error_message(r)
        assert count(app, Device) == 1
        assert count(app, AuditEntry) == audited


@pytest.mark.parametrize("database_url", ["postgresql", "sqlite"], indirect=True)
def test_concurrent_enrollments_of_one_key_under_two_ids_cannot_both_succeed(
    app: Flask, admin_headers: dict[str, str]
) -> None:
    # Each request checks that no device has the key, then inserts. Both
    # checks pass before either insert runs (the barrier holds both right
    # there); the unique index on devices.public_key must refuse one insert.
    # (Not later, e.g. in audit.append: with the index, the second insert
    # waits for the first transaction, so it would never reach the barrier.)
    key = Ed25519PrivateKey.generate()
    pumps = [Pump("pump-0001", key=key), Pump("pump-0002", key=key)]
    barrier = threading.Barrier(len(pumps), timeout=30)
    engine = app.extensions["pumpguard.engine"]

    def hold_the_insert(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO DEVICES"):
            barrier.wait()

    answers: dict[str, TestResponse] = {}

    def enroll_one(p: Pump) -> None:
        answers[p.device_id] = app.test_client().post(
            DEVICES, json=p.enrollment(), headers=admin_headers
        )

    event.listen(engine, "before_cursor_execute", hold_the_insert)
    try:
        threads = [threading.Thread(target=enroll_one, args=(p,)) for p in pumps]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        event.remove(engine, "before_cursor_execute", hold_the_insert)
    assert not barrier.broken, "the two enrollments did not both reach their insert"
    statuses = sorted(r.status_code for r in answers.values())
    assert statuses == [201, 409], {d: r.json for d, r in answers.items()}
    refused = next(r for r in answers.values() if r.status_code == 409)
    assert "this public key is already enrolled" in error_message(refused)
    with app.extensions["pumpguard.db"].begin() as s:
        holders = s.execute(
            select(Device.device_id).where(Device.public_key == pumps[0].public_hex)
        )
        assert len(holders.all()) == 1
    assert [a.action for a in audit_entries(app)].count("device.enroll") == 1
    for p in pumps:
        expected = 200 if answers[p.device_id].status_code == 201 else 401
        assert p.checkin(app.test_client()).status_code == expected


def test_the_database_refuses_a_second_device_with_an_enrolled_key(app: Flask, pump: Pump) -> None:
    # Whatever writes the row (the API, a script, a concurrent request).
    with pytest.raises(IntegrityError), app.extensions["pumpguard.db"].begin() as s:
        s.add(
            Device(
                device_id="pump-0002",
                hardware_id="rev-b",
                product=PRODUCT,
                public_key=pump.public_hex,
                status={},
            )
        )
    assert count(app, Device) == 1


def audit_entries(app: Flask) -> list[AuditEntry]:
    with app.extensions["pumpguard.db"].begin() as s:
        return list(s.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars())


def test_revocation_is_audited_once_and_needs_operator(
    client: FlaskClient,
    admin_headers: dict[str, str],
    token_headers: Callable[..., dict[str, str]],
    pump: Pump,
) -> None:
    path = f"{DEVICES}/{pump.device_id}"
    assert client.delete(path, headers=token_headers("reviewer")).status_code == 403
    r = client.delete(path, headers=token_headers("operator"))
    assert r.status_code == 200
    assert r.json is not None and r.json["revoked_at"] is not None
    again = client.delete(path, headers=admin_headers)
    assert again.status_code == 409 and "already revoked" in error_message(again)
    assert client.delete(f"{DEVICES}/pump-9999", headers=admin_headers).status_code == 404
    # A revoked device id stays taken: re-enrolling it needs a new id.
    assert client.post(DEVICES, json=pump.enrollment(), headers=admin_headers).status_code == 409


# -------------------------------------------------------------------- check-in


def test_checkin_records_state_and_assigns_the_published_release(
    client: FlaskClient,
    app: Flask,
    server_env: ServerEnv,
    admin_headers: dict[str, str],
    pump: Pump,
) -> None:
    # Publish a real two-person release into the server's repository and index it.
    repo = Repository(server_env.repo_dir)
    verified = publish_bundle(server_env.repo.bundle("1.1.0", 2), repo, server_env.repo.online)
    with app.extensions["pumpguard.db"].begin() as s:
        assert sync_release_index(s, repo) == 1
    fw = repo.state().product(PRODUCT).signed.targets[f"{PRODUCT}/1.1.0/firmware.img"]  # type: ignore[union-attr]
    assert verified is not None

    last_update = {
        "version": "1.0.0",
        "release_counter": 1,
        "result": "committed",
        "at": "2026-01-01T12:00:00+01:00",
    }
    r = pump.checkin(
        client, last_update=last_update, therapy={"state": "running"}, agent_state="idle"
    )
    assert r.status_code == 200, r.json
    assert r.headers["Cache-Control"] == "no-store"
    answer = r.json
    assert answer is not None
    assert answer["assigned"] == {
        "product": PRODUCT,
        "version": "1.1.0",
        "release_counter": 2,
        "firmware": {
            "path": f"{PRODUCT}/1.1.0/firmware.img",
            "length": fw.length,
            "sha256": fw.hashes["sha256"],
        },
        "sbom": {"path": f"{PRODUCT}/1.1.0/sbom.cdx.json"},
    }
    assert answer["poll_interval"] == app.config["PUMPGUARD"].poll_interval
    assert answer["server_time"].endswith("Z")

    shown = client.get(f"{DEVICES}/{pump.device_id}", headers=admin_headers).json
    assert shown is not None
    assert shown["version"] == "1.0.0" and shown["release_counter"] == 1
    assert shown["assigned_version"] == "1.1.0"
    assert shown["last_seen"] is not None
    assert shown["status"]["therapy"] == {"state": "running"}
    assert shown["status"]["slots"]["b"] == {"state": "empty"}
    assert shown["status"]["agent_state"] == "idle"
    # Times are normalised to UTC.
    assert shown["status"]["last_update"]["at"] == "2026-01-01T11:00:00Z"

    # Once the pump runs the release, nothing is assigned.
    r = pump.checkin(client, version="1.1.0", release_counter=2)
    assert r.json is not None and r.json["assigned"] is None
    assert device_row(app, pump.device_id).assigned_version is None


def test_checkin_assigns_only_newer_releases_for_the_pumps_hardware(
    client: FlaskClient, app: Flask, admin_headers: dict[str, str], pump: Pump
) -> None:
    rev_a = Pump("pump-rev-a", hardware_id="rev-a")
    enroll(client, admin_headers, rev_a)
    add_release(app, "1.1.0", 2, ["rev-b"])
    add_release(app, "1.2.0", 3, ["rev-b", "rev-a"])
    add_release(app, "1.3.0", 4, ["rev-a"])

    def assigned(p: Pump, counter: int) -> str | None:
        r = p.checkin(client, release_counter=counter)
        assert r.status_code == 200, r.json
        assert r.json is not None
        return r.json["assigned"]["version"] if r.json["assigned"] else None

    assert assigned(pump, 1) == "1.2.0"  # newest for rev-b, not rev-a's 1.3.0
    assert assigned(pump, 3) is None
    assert assigned(pump, 7) is None  # never an older release
    assert assigned(rev_a, 1) == "1.3.0"
    assert assigned(rev_a, 4) is None


def test_a_release_published_through_the_api_is_assigned_at_the_next_checkin(
    client: FlaskClient,
    server_env: ServerEnv,
    pump: Pump,
    token_headers: Callable[..., dict[str, str]],
) -> None:
    # The first check-in caches the product's releases (none newer) ...
    r = pump.checkin(client)
    assert r.status_code == 200 and r.json is not None and r.json["assigned"] is None
    # ... and a publish through this process drops that cache at once.
    repo = RepoEnv(server_env.repo_dir, server_env.repo.keys, server_env.repo.work)
    r = client.post(
        "/api/v1/releases",
        data=repo.bundle("1.1.0", 2, tar=True).read_bytes(),
        headers={**token_headers("release-engineer", [PRODUCT]), "Content-Type": TAR},
    )
    assert r.status_code == 201, r.json
    r = pump.checkin(client)
    assert r.status_code == 200 and r.json is not None
    assert r.json["assigned"]["version"] == "1.1.0"


def test_releases_indexed_by_another_process_are_assigned_within_the_cache_lifetime(
    client: FlaskClient, app: Flask, pump: Pump, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from update_server import devices

    r = pump.checkin(client)
    assert r.status_code == 200 and r.json is not None and r.json["assigned"] is None
    # Another worker indexes a release: this one may answer from its cache ...
    add_release(app, "1.1.0", 2)
    # ... but for CANDIDATE_TTL seconds at most.
    later = time.monotonic() + devices.CANDIDATE_TTL
    monkeypatch.setattr(devices.time, "monotonic", lambda: later)
    r = pump.checkin(client)
    assert r.status_code == 200 and r.json is not None
    assert r.json["assigned"]["version"] == "1.1.0"


def _report(**changes: Any) -> dict[str, Any]:
    return checkin_report(Pump("pump-0001"), **changes)


def _slot(**fields: Any) -> dict[str, Any]:
    return {"a": {"state": "active", **fields}}


def _update(**changes: Any) -> dict[str, Any]:
    return {
        "version": "1.0.0",
        "release_counter": 1,
        "result": "failed",
        "at": "2026-01-01T00:00:00Z",
        **changes,
    }


NAIVE = "2026-01-01T00:00:00"
# Valid times whose UTC form is outside the years 1-9999.
EARLIEST_EAST = "0001-01-01T00:00:00+01:00"
LATEST_WEST = "9999-12-31T23:59:59-01:00"


def _since(at: str) -> dict[str, Any]:
    return {"state": "idle", "since": at}


BAD_CHECKINS: list[tuple[str, bytes | dict[str, Any], int, str]] = [
    ("not-json", b"{", 400, "not valid JSON"),
    ("array", b"[1]", 400, "must be a JSON object"),
    ("duplicate-key", b'{"version": "1.0.0", "version": "9.0.0"}', 400, "duplicate key"),
    ("missing-therapy", {k: v for k, v in _report().items() if k != "therapy"}, 400, "therapy"),
    ("unknown-field", _report(firmware_url="http://evil"), 400, "unknown field(s): firmware_url"),
    ("version-not-semver", _report(version="1.0"), 400, "not a semantic version"),
    ("version-number", _report(version=1), 400, "semantic version"),
    ("version-too-long", _report(version="1.0.0-" + "a" * 70), 400, "64 characters"),
    ("counter-bool", _report(release_counter=True), 400, "release_counter"),
    ("counter-negative", _report(release_counter=-1), 400, "release_counter"),
    ("counter-string", _report(release_counter="3"), 400, "release_counter"),
    ("counter-huge", _report(release_counter=2**63), 400, "release_counter"),
    ("counter-float", _report(release_counter=1.5), 400, "release_counter"),
    ("slots-list", _report(slots=["a"]), 400, "slots must be"),
    ("slots-too-many", _report(slots={s: {"state": "empty"} for s in "abcde"}), 400, "at most 4"),
    ("slot-bad-name", _report(slots={"A/../b": {"state": "empty"}}), 400, "slot name"),
    ("slot-unknown-field", _report(slots=_slot(boot_count=3)), 400, "unknown field(s): boot"),
    ("slot-bad-state", _report(slots={"a": {"state": "broken"}}), 400, "slots.a.state"),
    ("slot-missing-state", _report(slots={"a": {}}), 400, "lacks field(s): state"),
    ("slot-bad-sha256", _report(slots=_slot(sha256="AB" * 32)), 400, "sha256"),
    ("slot-sha256-trailing-newline", _report(slots=_slot(sha256="ab" * 32 + "\n")), 400, "sha256"),
    ("slot-name-trailing-newline", _report(slots={"a\n": {"state": "empty"}}), 400, "slot name"),
    ("slot-bad-version", _report(slots=_slot(version="x")), 400, "slots.a.version"),
    ("therapy-bad-state", _report(therapy={"state": "paused"}), 400, "therapy.state"),
    ("therapy-string", _report(therapy="idle"), 400, "therapy must be a JSON object"),
    ("therapy-since-naive", _report(therapy={"state": "idle", "since": NAIVE}), 400, "time zone"),
    ("last-update-bad-result", _report(last_update=_update(result="ok")), 400, "result"),
    ("last-update-bad-time", _report(last_update=_update(at="yesterday")), 400, "RFC 3339"),
    ("last-update-no-zone", _report(last_update=_update(at=NAIVE)), 400, "time zone"),
    ("last-update-long-error", _report(last_update=_update(error="e" * 513)), 400, "at most 512"),
    ("last-update-missing", _report(last_update={"result": "failed"}), 400, "lacks field(s)"),
    ("therapy-since-year-0", _report(therapy=_since(EARLIEST_EAST)), 400, "therapy.since"),
    ("last-update-year-10000", _report(last_update=_update(at=LATEST_WEST)), 400, "last_update.at"),
    ("last-update-list", _report(last_update=[]), 400, "last_update must be"),
    ("agent-state-unknown", _report(agent_state="hacking"), 400, "agent_state"),
    ("product-mismatch", _report(product="other-pump"), 409, "enrolled with 'sigma-spectrum'"),
    ("hardware-mismatch", _report(hardware_id="rev-z"), 409, "enrolled with 'rev-b'"),
    ("product-invalid", _report(product="Sigma"), 400, "product"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [pytest.param(b, s, w, id=i) for i, b, s, w in BAD_CHECKINS],
)
def test_malformed_checkin_is_refused_and_changes_nothing(
    client: FlaskClient,
    app: Flask,
    pump: Pump,
    body: bytes | dict[str, Any],
    status: int,
    words: str,
) -> None:
    r = pump.post(client, "checkin", body)
    assert r.status_code == status, r.json
    assert words in error_message(r)
    device = device_row(app, pump.device_id)
    assert device.last_seen is None and device.version is None and device.status == {}
    # Nothing at all was written, not even the request's nonce.
    from update_server.models import DeviceNonce

    assert count(app, DeviceNonce) == 0


# ---------------------------------------------------------------------- events


def test_events_are_stored_and_listed(
    client: FlaskClient,
    app: Flask,
    pump: Pump,
    token_headers: Callable[..., dict[str, str]],
) -> None:
    batch = {
        "events": [
            {"kind": "download-start", "at": "2026-01-01T12:00:00Z", "detail": {"v": "1.1.0"}},
            {"kind": "download-done", "at": "2026-01-01T12:01:00Z"},
            {
                "kind": "deferred",
                "at": "2026-01-01T13:01:00+01:00",
                "detail": {"reason": "infusing"},
            },
        ]
    }
    r = pump.post(client, "events", batch)
    assert r.status_code == 201, r.json
    assert r.json == {"stored": 3}
    assert device_row(app, pump.device_id).last_seen is not None

    reviewer = token_headers("reviewer")
    path = f"{DEVICES}/{pump.device_id}/events"
    listed = client.get(path, headers=reviewer).json
    assert listed is not None and listed["total"] == 3
    assert [e["kind"] for e in listed["events"]] == ["deferred", "download-done", "download-start"]
    newest = listed["events"][0]
    assert newest["at"] == "2026-01-01T12:01:00Z"
    assert newest["detail"] == {"reason": "infusing"}
    assert listed["events"][1]["detail"] == {}

    only = client.get(f"{path}?kind=deferred", headers=reviewer).json
    assert only is not None and [e["kind"] for e in only["events"]] == ["deferred"]
    page = client.get(f"{path}?limit=1&offset=1", headers=reviewer).json
    assert page is not None and [e["kind"] for e in page["events"]] == ["download-done"]

    engineer = token_headers("release-engineer", [PRODUCT])
    assert client.get(path, headers=engineer).status_code == 403
    assert client.get(path).status_code == 401
    assert client.get(f"{DEVICES}/pump-9999/events", headers=reviewer).status_code == 404
    assert client.get(f"{path}?kind=party", headers=reviewer).status_code == 400


def _event(**changes: Any) -> dict[str, Any]:
    return {"kind": "check", "at": "2026-01-01T00:00:00Z", **changes}


BAD_EVENTS: list[tuple[str, Any, str]] = [
    ("no-events-key", {"event": []}, "unknown field(s): event"),
    ("events-not-list", {"events": {}}, "events must be a list"),
    ("empty", {"events": []}, "1 to 100"),
    ("too-many", {"events": [_event()] * 101}, "1 to 100"),
    ("unknown-kind", {"events": [_event(kind="exploded")]}, "events[0].kind"),
    ("missing-at", {"events": [{"kind": "check"}]}, "lacks field(s): at"),
    ("bad-at", {"events": [_event(), _event(at="soon")]}, "events[1].at"),
    ("detail-not-object", {"events": [_event(detail="x")]}, "must be a JSON object"),
    ("detail-too-large", {"events": [_event(detail={"log": "x" * 3000})]}, "larger than 2048"),
    ("unknown-event-field", {"events": [_event(severity=1)]}, "unknown field(s): severity"),
    ("event-not-object", {"events": ["check"]}, "events[0] must be a JSON object"),
    ("at-year-0", {"events": [_event(at=EARLIEST_EAST)]}, "events[0].at"),
    ("at-year-10000", {"events": [_event(), _event(at=LATEST_WEST)]}, "events[1].at"),
]


@pytest.mark.parametrize(("body", "words"), [pytest.param(b, w, id=i) for i, b, w in BAD_EVENTS])
def test_malformed_event_batch_stores_nothing(
    client: FlaskClient, app: Flask, pump: Pump, body: Any, words: str
) -> None:
    r = pump.post(client, "events", body)
    assert r.status_code == 400, r.json
    assert words in error_message(r)
    assert count(app, DeviceEvent) == 0
    assert device_row(app, pump.device_id).last_seen is None


def test_a_full_batch_of_events_is_accepted(client: FlaskClient, app: Flask, pump: Pump) -> None:
    detail = {"note": "n" * 1500}
    r = pump.post(client, "events", {"events": [_event(detail=detail)] * 100})
    assert r.status_code == 201, r.json
    assert count(app, DeviceEvent) == 100


# --------------------------------------------------------------------- listing


def test_device_list_filters_and_pages(
    client: FlaskClient,
    admin_headers: dict[str, str],
    token_headers: Callable[..., dict[str, str]],
) -> None:
    for i in range(5):
        enroll(client, admin_headers, Pump(f"pump-{i:04d}"))
    reviewer = token_headers("reviewer")
    everything = client.get(DEVICES, headers=reviewer).json
    assert everything is not None and everything["total"] == 5
    assert [d["device_id"] for d in everything["devices"]] == [f"pump-{i:04d}" for i in range(5)]
    page = client.get(f"{DEVICES}?limit=2&offset=2", headers=reviewer).json
    assert page is not None
    assert [d["device_id"] for d in page["devices"]] == ["pump-0002", "pump-0003"]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 2)
    assert client.get(f"{DEVICES}?product={PRODUCT}", headers=reviewer).json["total"] == 5  # type: ignore[index]
    assert client.get(f"{DEVICES}?product=other-pump", headers=reviewer).json["total"] == 0  # type: ignore[index]
    assert client.get(DEVICES, headers=token_headers("operator")).status_code == 200
    engineer = token_headers("release-engineer", [PRODUCT])
    assert client.get(DEVICES, headers=engineer).status_code == 403
    assert client.get(DEVICES).status_code == 401


def test_device_list_reports_last_state(
    client: FlaskClient, admin_headers: dict[str, str], pump: Pump
) -> None:
    assert pump.checkin(client, version="1.0.1").status_code == 200
    devices = client.get(DEVICES, headers=admin_headers).json["devices"]  # type: ignore[index]
    assert devices[0]["version"] == "1.0.1"
    assert devices[0]["status"]["therapy"]["state"] == "idle"


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("offset=-1", "offset"),
        ("offset=99999999999999", "offset"),
        ("product=Sigma", "product"),
        ("sort=name", "unknown query parameter(s): sort"),
    ],
)
def test_device_list_refuses_bad_query_parameters(
    client: FlaskClient, admin_headers: dict[str, str], query: str, words: str
) -> None:
    r = client.get(f"{DEVICES}?{query}", headers=admin_headers)
    assert r.status_code == 400
    assert words in error_message(r)


def test_unknown_device_is_not_found(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    for device_id in ("pump-9999", "..."):
        r = client.get(f"{DEVICES}/{device_id}", headers=admin_headers)
        assert r.status_code == 404
        assert r.is_json


def test_wrong_method_is_a_json_error(client: FlaskClient, pump: Pump) -> None:
    r = client.get(f"{DEVICES}/{pump.device_id}/checkin")
    assert r.status_code == 405
    assert r.is_json


# ------------------------------------------------------------------ assignment


@dataclass(frozen=True)
class Rel:
    version: str
    release_counter: int
    hardware_ids: tuple[str, ...] = ("rev-b",)
    product: str = PRODUCT


FACTS = DeviceFacts("pump-0001", PRODUCT, "rev-b", 2)


@pytest.mark.parametrize(
    ("releases", "facts", "expected"),
    [
        pytest.param([], FACTS, None, id="no-releases"),
        pytest.param([Rel("1.1.0", 3, ("rev-a",))], FACTS, None, id="hardware-mismatch"),
        pytest.param([Rel("1.0.0", 1)], FACTS, None, id="older-counter"),
        pytest.param([Rel("1.0.1", 2)], FACTS, None, id="same-counter"),
        pytest.param([Rel("1.1.0", 3, product="other")], FACTS, None, id="other-product"),
        pytest.param([Rel("1.1.0", 3)], FACTS, "1.1.0", id="newer"),
        pytest.param(
            [Rel("1.1.0", 3), Rel("1.3.0", 5), Rel("1.2.0", 4)], FACTS, "1.3.0", id="newest-wins"
        ),
        pytest.param(
            [Rel("1.1.0", 3), Rel("1.3.0", 5, ("rev-a",))],
            FACTS,
            "1.1.0",
            id="newest-compatible-wins",
        ),
        pytest.param(
            [Rel("2.0.0", 3), Rel("1.9.0", 4)], FACTS, "1.9.0", id="counter-not-semver-decides"
        ),
        pytest.param(
            [Rel("1.0.0", 1)],
            DeviceFacts("new", PRODUCT, "rev-b", 0),
            "1.0.0",
            id="factory-counter-zero",
        ),
    ],
)
def test_choose_release(releases: list[Rel], facts: DeviceFacts, expected: str | None) -> None:
    chosen = choose_release(releases, facts)
    assert (chosen.version if chosen else None) == expected


# ------------------------------------------------------------------------- CLI


def test_keygen_writes_a_private_key_only_the_owner_can_read(
    tmp_path: Path, run_cli: Callable[..., CliResult]
) -> None:
    out = tmp_path / "keys" / "pump-0001"
    r = run_cli("device", "keygen", "--out", out, "--json")
    assert r.code == 0, r.err
    result = json.loads(r.out)
    private = Path(result["private_key_file"])
    assert private == tmp_path / "keys" / "pump-0001.key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    public_hex = (tmp_path / "keys" / "pump-0001.pub").read_text().strip()
    assert public_hex == result["public_key"]
    assert (
        key.public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        .hex()
        == public_hex
    )
    # An existing pair is never overwritten by accident.
    again = run_cli("device", "keygen", "--out", out)
    assert again.code == 1 and "--force" in again.err
    assert run_cli("device", "keygen", "--out", out, "--force").code == 0


def test_enroll_through_the_cli_over_http(
    app: Flask,
    server_env: ServerEnv,
    tmp_path: Path,
    run_cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "pump-0001"
    assert run_cli("device", "keygen", "--out", out).code == 0
    monkeypatch.setenv("PG_OPERATOR", server_env.admin_token)
    with live_server(app) as url:

        def enroll_cli(device_id: str, public_key: str | Path, *extra: str) -> CliResult:
            return run_cli(
                "device", "enroll", "--server", url, "--device-id", device_id,
                "--hardware-id", "rev-b", "--product", PRODUCT, "--token-env", "PG_OPERATOR",
                "--public-key", public_key, *extra,
            )  # fmt: skip

        r = enroll_cli("pump-0001", out.with_suffix(".pub"), "--json")
        assert r.code == 0, r.err
        assert json.loads(r.out)["device_id"] == "pump-0001"
        assert server_env.admin_token not in r.out + r.err
        # Enrolling again is refused by the server, reported on one line.
        r = enroll_cli("pump-0001", out.with_suffix(".pub"))
        assert r.code == 1
        assert r.err.strip().count("\n") == 0
        assert "HTTP 409" in r.err and "already enrolled" in r.err
        # A bad token is a refusal too, not a traceback.
        monkeypatch.setenv("PG_OPERATOR", "pgt_wrong")
        r = enroll_cli("pump-0002", "ab" * 32)
        assert r.code == 1 and "HTTP 401" in r.err
    assert device_row(app, "pump-0001").public_key == out.with_suffix(".pub").read_text().strip()


LOCAL = "http://127.0.0.1:9"
KEY = "ab" * 32


@pytest.mark.parametrize(
    ("server", "key", "token", "words"),
    [
        pytest.param(LOCAL, KEY, None, "set PUMPGUARD_TOKEN", id="no-token"),
        pytest.param("http://updates.example.com", KEY, "t", "use https", id="plain-http"),
        pytest.param("ftp://127.0.0.1", KEY, "t", "http(s) URL", id="not-http"),
        pytest.param(LOCAL, "/nonexistent/key.pub", "t", "nor a readable file", id="no-key-file"),
    ],
)
def test_enroll_cli_refuses_bad_options(
    run_cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
    server: str,
    key: str,
    token: str | None,
    words: str,
) -> None:
    monkeypatch.delenv("PUMPGUARD_TOKEN", raising=False)
    if token is not None:
        monkeypatch.setenv("PUMPGUARD_TOKEN", token)
    r = run_cli(
        "device", "enroll", "--device-id", "p1", "--hardware-id", "rev-b",
        "--product", PRODUCT, "--server", server, "--public-key", key,
    )  # fmt: skip
    assert r.code == 2, r.err
    assert words in r.err


def test_enroll_cli_reports_an_unreachable_server(
    run_cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUMPGUARD_TOKEN", "pgt_x")
    r = run_cli(
        "device", "enroll", "--server", "http://127.0.0.1:9", "--device-id", "p1",
        "--hardware-id", "rev-b", "--product", PRODUCT, "--public-key", "ab" * 32,
    )  # fmt: skip
    assert r.code == 1
    assert "cannot reach http://127.0.0.1:9" in r.err
