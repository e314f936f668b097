"""Generated bodies: the OpenAPI document and the server agree on each one.

Issue 19 finding 8 (threat SRV-INPUT). A seeded generator mutates the valid
enrollment, check-in and event batch (fields dropped, added, replaced by
boundary values of every field, strings lengthened past their limits or
given a final newline, lists grown past theirs) and each body goes to the
real server (SQLite) and through the document's schema, the rules JSON
Schema cannot state included (contract_support.beyond_schema). Hand-picked
cases on both databases are in test_openapi_contract.py.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from contract_support import CHECKIN, ENROLL, EVENTS, BodyContract, beyond_schema, send
from repo_support import PRODUCT
from server_support import Pump, checkin_report
from update_server.devices import (
    AGENT_STATES,
    EVENT_KINDS,
    SLOT_STATES,
    THERAPY_STATES,
    UPDATE_RESULTS,
)

SEED = 19
BODIES = 300  # per operation; about a second each on SQLite

SEMVER_64 = "1.0.0-" + "a" * 58
AT = "2026-01-01T12:00:00Z"
SHA = "ab" * 32
# RFC 3339 times only: the ISO 8601 forms outside it are refused by both, and
# test_openapi_contract.py tables them.
TIMES = [
    AT,
    "2026-01-01T12:00:00.5+05:30",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:30:00+01:00",
    "9999-12-31T23:30:00-01:00",
    "2025-02-29T00:00:00Z",
    "2026-01-01t12:00:00z",
    "2026-12-31T23:59:60Z",
    "2026-01-01T12:00:00",
    "2026-01-01T00:00:00." + "1" * 19 + "Z",
    AT + "\n",
]
VERSIONS = ["0.0.0", "1.2.3-rc.1", "1.2.3+build.01", SEMVER_64, SEMVER_64 + "a", "1.2",
            "01.2.3", "1.2.3-rc.01", "1.2.3\n", "v1.2.3", ""]  # fmt: skip
COUNTERS = [0, 1, 2**63 - 1, 2**63, -1, True, False, 1.0, 1.5, "1", None]
GENERIC: list[Any] = [None, True, False, 0, -1, 1.5, "", "x", [], {}, {"a": 1}, [1]]
UNKNOWN_KEYS = ["extra", "role", "notes", "kind", "version", "state", "at", "detail"]
SLOT_NAMES = ["a", "b", "c", "d", "e", "z" * 16, "z" * 17, "A", "a\n", "", "a_b-1"]


def _detail(rng: random.Random) -> Any:
    """An event detail near the size and depth limits, or a wrong one."""
    n = rng.randrange(2030, 2046)
    nested: dict[str, Any] = {}
    for _ in range(rng.randrange(58, 64)):
        nested = {"a": nested}
    return rng.choice(
        [
            {},
            {"log": "x" * n},  # compact length n + 10
            {"log": "x" * n, "n": 1},
            {"t": "é" * (n // 6)},  # each é is \u00e9 in the compact form
            {"n": [1.5, 2**64, None, True, "\x00"]},
            {"n": float("nan")},
            {"n": 10**400},
            nested,
            None,
            [],
            "x",
        ]
    )


def _pools(rng: random.Random, pump: Pump) -> dict[str, list[Any]]:
    """Candidate values per field name, valid and invalid ones."""
    key = pump.public_hex
    return {
        "device_id": [pump.device_id, "a", "A" * 128, "a..b", "a:b.c_d", "b" * 129, "..", "-a",
                      "a\n", 17],
        "hardware_id": ["rev-b", "rev-z", "r", "R" * 64, "r.v_1-2", "R" * 65, "_r", "rev-b\n"],
        "product": [PRODUCT, PRODUCT, "other-pump", "root", "Sigma", "a" * 65, PRODUCT + "\n"],
        "public_key": [key, key.upper(), key[:32] + key[32:].upper(), key[:63], key + "0",
                       key + "\n", "00" * 32, "zz" * 32],
        "version": VERSIONS,
        "release_counter": COUNTERS,
        "state": [*SLOT_STATES, *THERAPY_STATES, "broken"],
        "result": [*UPDATE_RESULTS, "ok"],
        "agent_state": [*AGENT_STATES, None, "hacking"],
        "kind": [*EVENT_KINDS, "exploded", None],
        "at": TIMES,
        "since": TIMES,
        "sha256": [SHA, SHA.upper(), SHA[:63], SHA + "\n", None],
        "error": ["e" * 512, "e" * 513, "😀" * 512, "", "\x00", "\ud800", None],
        "detail": [_detail(rng)],
        "last_update": [None, {"version": "1.0.0", "release_counter": 1, "result": "failed",
                               "at": AT}],
        "therapy": [{"state": "idle"}, {"state": "running", "since": AT}, "idle"],
        "slots": [{}, {"a": {"state": "empty"}}, {n: {"state": "empty"} for n in "abcde"}],
    }  # fmt: skip


def _locations(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``value``, itself included."""
    found = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _locations(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):  # a batch of 100 copies needs no 100 paths
            found += _locations(v, (*path, i))
    return found


def _get(body: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        body = body[part]
    return body


def _tweak_string(rng: random.Random, text: str) -> str:
    choice = rng.randrange(4)
    if choice == 0:
        return text + rng.choice(["\n", " ", "a", "A", "-", ".", "0", "é", "😀"])
    if choice == 1:
        return text[:-1]
    if choice == 2:
        return rng.choice(["a", "-", ".", " "]) + text
    length = rng.choice([16, 17, 40, 41, 64, 65, 128, 129, 512, 513])
    return (text + "a" * length)[:length]


def mutate(rng: random.Random, body: Any, pools: dict[str, list[Any]]) -> Any:
    """``body`` with one to three random changes."""
    body = copy.deepcopy(body)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        path = rng.choice(_locations(body))
        value = _get(body, path)
        name = next((p for p in reversed(path) if isinstance(p, str)), "")
        if isinstance(value, dict) and rng.random() < 0.15:
            if name == "slots":
                value[rng.choice(SLOT_NAMES)] = {"state": rng.choice(SLOT_STATES)}
            else:
                value[rng.choice(UNKNOWN_KEYS)] = copy.deepcopy(rng.choice(GENERIC))
            continue
        if isinstance(value, list) and value and rng.random() < 0.5:
            value[:] = [value[0]] * rng.choice([0, 1, 2, 99, 100, 101])
            continue
        if not path:
            body = copy.deepcopy(rng.choice(GENERIC))
            continue
        parent = _get(body, path[:-1])
        if isinstance(parent, dict) and rng.random() < 0.1:
            del parent[path[-1]]
        elif isinstance(value, str) and rng.random() < 0.4:
            parent[path[-1]] = _tweak_string(rng, value)
        elif name in pools and rng.random() < 0.8:
            parent[path[-1]] = copy.deepcopy(rng.choice(pools[name]))
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(GENERIC))
    return body


BASES: dict[str, tuple[tuple[str, str], Callable[[Pump], Any]]] = {
    "enrollment": (ENROLL, lambda p: p.enrollment()),
    "checkin": (
        CHECKIN,
        lambda p: checkin_report(
            p,
            slots={"a": {"state": "active", "version": "1.0.0", "release_counter": 1,
                         "sha256": SHA}, "b": {"state": "empty"}},
            last_update={"version": "1.0.0", "release_counter": 1, "result": "committed",
                         "at": AT, "error": ""},
            therapy={"state": "idle", "since": AT},
            agent_state="idle",
        ),
    ),
    "events": (
        EVENTS,
        # The first detail is exactly at the size limit: one character more is over.
        lambda _p: {"events": [{"kind": "check", "at": AT, "detail": {"log": "x" * 2038}},
                               {"kind": "verified", "at": AT}]},
    ),
}  # fmt: skip


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("operation", sorted(BASES))
def test_generated_bodies_are_accepted_by_the_document_exactly_when_by_the_server(
    client: FlaskClient, admin_headers: dict[str, str], pump: Pump, operation: str
) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    validate(document)
    contract = BodyContract(document)
    route, base = BASES[operation]
    rng = random.Random(f"{SEED}-{operation}")
    mismatches, accepted = [], 0
    for i in range(BODIES):
        # Every enrollment is a new pump: only the mutation decides.
        sender = Pump(f"generated-{i}") if route == ENROLL else pump
        body = mutate(rng, base(sender), _pools(rng, sender))
        schema = contract.judge(route, body)
        rule = beyond_schema(route, body) if schema.accepted else None
        expected = schema.accepted and rule is None
        server = send(contract, client, route, body, pump=sender, admin=admin_headers)
        accepted += server.accepted
        if server.accepted != expected:
            why = f"rule {rule}" if rule else schema.why
            mismatches.append(f"#{i}: server {server.why}, document {why}: {body!r:.300}")
        if server.problem:
            mismatches.append(f"#{i}: {server.problem}: {body!r:.300}")
    assert not mismatches, "\n".join(mismatches)
    # The generator must exercise both sides, or agreement proves little.
    assert BODIES * 0.15 < accepted < BODIES * 0.85, accepted
