"""The OpenAPI document accepts a request body exactly when the server does.

Issue 19 finding 8 (threat SRV-INPUT): the document was laxer than the server
(any event kind in the listing, a version that is not semantic, an event
detail over the 2 KiB limit, a device id of "..", hardware ids and slot names
with a final newline under Python's ``$``) and stricter in places (upper-case
public keys, null slot versions). Here every case of a table of boundary
values goes to the real server on SQLite and PostgreSQL and through the
document's own schema, and both verdicts must agree with the table. Rules
JSON Schema cannot state are named per case (``rule``): the schema accepts,
the server refuses, and the document says so in words (RULE_TEXT).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from contract_support import (
    CHECKIN,
    ENROLL,
    EVENTS,
    BodyContract,
    beyond_schema,
    compact,
    send,
)
from repo_support import PRODUCT
from server_support import Pump, checkin_report
from update_server.devices import (
    AGENT_STATES,
    EVENT_KINDS,
    MAX_CHECKIN_BODY,
    MAX_EVENTS_BODY,
    SLOT_STATES,
    THERAPY_STATES,
    UPDATE_RESULTS,
)

DROP: Any = object()  # a field removed from the valid body


@dataclass(frozen=True)
class Case:
    """One body, and whether the server must take it."""

    name: str
    build: Callable[[Pump], Any]
    accepted: bool
    rule: str | None = None  # the rule outside JSON Schema that refuses it


def _changed(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    body = {**base, **changes}
    return {k: v for k, v in body.items() if v is not DROP}


def enrollment(name: str, accepted: bool, rule: str | None = None, **changes: Any) -> Case:
    return Case(name, lambda p: _changed(p.enrollment(), changes), accepted, rule)


def checkin(name: str, accepted: bool, rule: str | None = None, **changes: Any) -> Case:
    return Case(name, lambda p: _changed(checkin_report(p), changes), accepted, rule)


def whole(name: str, body: Any, accepted: bool = False, rule: str | None = None) -> Case:
    return Case(name, lambda _p: body, accepted, rule)


def slot(**fields: Any) -> dict[str, Any]:
    return {"a": _changed({"state": "active", "version": "1.0.0", "release_counter": 1}, fields)}


def update(**changes: Any) -> dict[str, Any]:
    base = {"version": "1.0.0", "release_counter": 1, "result": "failed", "at": AT}
    return _changed(base, changes)


def events(*items: dict[str, Any]) -> dict[str, Any]:
    return {"events": list(items)}


def event(**changes: Any) -> dict[str, Any]:
    return _changed({"kind": "check", "at": AT}, changes)


def nested(depth: int) -> dict[str, Any]:
    """An object nested ``depth`` deep, itself counted."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


AT = "2026-01-01T12:00:00Z"
SHA = "ab" * 32
SEMVER_64 = "1.0.0-" + "a" * 58
# {"log":"..."} is 10 characters around the text; {"t":"..."} 8, and é is \u00e9.
DETAIL_2048 = {"log": "x" * 2038}
DETAIL_2049 = {"log": "x" * 2039}
ESCAPED_2048 = {"t": "é" * 340}
ESCAPED_2054 = {"t": "é" * 341}
TIME_40 = "2026-01-01T00:00:00." + "1" * 19 + "Z"
TIME_41 = "2026-01-01T00:00:00." + "1" * 20 + "Z"

# Timestamps, each in therapy.since, last_update.at and an event's at.
TIMES: list[tuple[str, str | int, bool, str | None]] = [
    ("utc", AT, True, None),
    ("offset-fraction", "2026-01-01T12:00:00.123456+05:30", True, None),
    ("minus-zero", "2026-01-01T12:00:00-00:00", True, None),
    ("leap-day", "2024-02-29T00:00:00Z", True, None),
    ("first", "0001-01-01T00:00:00Z", True, None),
    ("last", "9999-12-31T23:59:59Z", True, None),
    ("40-characters", TIME_40, True, None),
    ("41-characters", TIME_41, False, None),
    ("not-a-leap-day", "2025-02-29T00:00:00Z", False, None),
    ("lower-case-t-z", "2026-01-01t12:00:00z", False, None),
    ("leap-second", "2026-12-31T23:59:60Z", False, None),
    ("hour-24", "2026-01-01T24:00:00Z", False, None),
    ("no-zone", "2026-01-01T12:00:00", False, None),
    ("year-0", "0000-01-01T00:00:00Z", False, None),
    ("final-newline", AT + "\n", False, None),
    ("words", "yesterday", False, None),
    ("number", 1767268800, False, None),
    ("utc-before-year-1", "0001-01-01T00:30:00+01:00", False, "utc-range"),
    ("utc-after-year-9999", "9999-12-31T23:30:00-01:00", False, "utc-range"),
]

ENROLLMENTS: list[Case] = [
    enrollment("valid", True),
    enrollment("device-id-1", True, device_id="a"),
    enrollment("device-id-128", True, device_id="A" * 128),
    enrollment("device-id-inner-dots", True, device_id="a..b"),
    enrollment("device-id-every-character", True, device_id="Z9._:-z"),
    enrollment("device-id-129", False, device_id="b" * 129),
    enrollment("device-id-empty", False, device_id=""),
    enrollment("device-id-dot", False, device_id="."),
    enrollment("device-id-dotdot", False, device_id=".."),
    enrollment("device-id-leading-hyphen", False, device_id="-a"),
    enrollment("device-id-final-newline", False, device_id="a\n"),
    enrollment("device-id-slash", False, device_id="a/b"),
    enrollment("device-id-space", False, device_id="a b"),
    enrollment("device-id-non-ascii", False, device_id="pümp"),
    enrollment("device-id-number", False, device_id=17),
    enrollment("device-id-bool", False, device_id=True),
    enrollment("device-id-null", False, device_id=None),
    enrollment("hardware-id-1", True, hardware_id="r"),
    enrollment("hardware-id-64", True, hardware_id="R" * 64),
    enrollment("hardware-id-every-character", True, hardware_id="r.v_1-2"),
    enrollment("hardware-id-65", False, hardware_id="R" * 65),
    enrollment("hardware-id-leading-underscore", False, hardware_id="_r"),
    enrollment("hardware-id-colon", False, hardware_id="r:1"),
    enrollment("hardware-id-final-newline", False, hardware_id="rev-b\n"),
    enrollment("hardware-id-list", False, hardware_id=["rev-b"]),
    enrollment("product-reserved-root", False, product="root"),
    enrollment("product-reserved-targets", False, product="targets"),
    enrollment("product-upper-case", False, product="Sigma"),
    enrollment("product-leading-hyphen", False, product="-a"),
    enrollment("product-trailing-hyphen", False, product="a-"),
    enrollment("product-65", False, product="a" * 65),
    enrollment("product-final-newline", False, product=PRODUCT + "\n"),
    enrollment("product-not-delegated", False, "delegated-product", product="other-pump"),
    enrollment("product-64-not-delegated", False, "delegated-product", product="a" * 64),
    enrollment("product-number", False, product=1),
    Case("key-upper-case", lambda p: p.enrollment(public_key=p.public_hex.upper()), True),
    Case(
        "key-mixed-case",
        lambda p: p.enrollment(public_key=p.public_hex[:32] + p.public_hex[32:].upper()),
        True,
    ),
    Case("key-63", lambda p: p.enrollment(public_key=p.public_hex[:63]), False),
    Case("key-65", lambda p: p.enrollment(public_key=p.public_hex + "0"), False),
    Case("key-final-newline", lambda p: p.enrollment(public_key=p.public_hex + "\n"), False),
    enrollment("key-not-hex", False, public_key="zz" * 32),
    enrollment("key-zero-small-order", False, "key-point", public_key="00" * 32),
    enrollment("key-number", False, public_key=7),
    enrollment("key-null", False, public_key=None),
    enrollment("unknown-field", False, role="admin"),
    enrollment("over-the-body-limit", False, notes="x" * 5000),
    *(enrollment(f"missing-{f}", False, **{f: DROP}) for f in Pump("x").enrollment()),
    whole("array", []),
    whole("null", None),
    whole("string", "pump"),
]

LARGEST_CHECKIN = checkin_report(
    Pump("x"),
    version=SEMVER_64,
    release_counter=2**63 - 1,
    slots={
        f"slot-{i:011d}": {"state": "inactive", "version": SEMVER_64, "release_counter": 2**63 - 1,
                           "sha256": SHA}
        for i in range(4)
    },
    last_update=update(version=SEMVER_64, result="in-progress", at=TIME_40, error="😀" * 512),
    therapy={"state": "programmed", "since": TIME_40},
    agent_state="waiting-for-safe-window",
)  # fmt: skip

CHECKINS: list[Case] = [
    checkin("valid", True),
    Case("largest", lambda p: {**LARGEST_CHECKIN, "hardware_id": p.hardware_id}, True),
    *(checkin(f"version-{v}", True, version=v) for v in (
        "0.0.0", "1.2.3-rc.1", "1.2.3-0rc", "1.2.3-rc-1.x-y", "1.2.3+build", "1.2.3+build.01",
        "1.2.3-rc.1+b.2", "10.20.30", SEMVER_64,
    )),
    *(checkin(f"version-{v!r}", False, version=v) for v in (
        "1.2", "1", "01.2.3", "1.02.3", "1.2.03", "1.2.3-rc.01", "1.2.3-", "1.2.3+", "1.2.3+a..b",
        "1.2.3\n", "v1.2.3", " 1.2.3", "1.2.3 ", "\uff11.2.3", "1.2.3-\u03b1", SEMVER_64 + "a",
        "", 1, None, True,
    )),
    checkin("counter-0", True, release_counter=0),
    checkin("counter-max", True, release_counter=2**63 - 1),
    checkin("counter-max-plus-1", False, release_counter=2**63),
    checkin("counter-negative", False, release_counter=-1),
    checkin("counter-true", False, release_counter=True),
    checkin("counter-false", False, release_counter=False),
    checkin("counter-1.5", False, release_counter=1.5),
    checkin("counter-1.0", False, "integer-literal", release_counter=1.0),
    checkin("counter-string", False, release_counter="1"),
    checkin("counter-null", False, release_counter=None),
    checkin("slots-none", True, slots={}),
    checkin("slots-4", True, slots={s: {"state": "empty"} for s in "abcd"}),
    checkin("slots-5", False, slots={s: {"state": "empty"} for s in "abcde"}),
    checkin("slot-name-16", True, slots={"a" * 16: {"state": "empty"}}),
    checkin("slot-name-every-character", True, slots={"a_b-9": {"state": "empty"}}),
    checkin("slot-name-17", False, slots={"a" * 17: {"state": "empty"}}),
    checkin("slot-name-empty", False, slots={"": {"state": "empty"}}),
    checkin("slot-name-upper-case", False, slots={"A": {"state": "empty"}}),
    checkin("slot-name-final-newline", False, slots={"a\n": {"state": "empty"}}),
    *(checkin(f"slot-state-{s}", True, slots={"a": {"state": s}}) for s in SLOT_STATES),
    checkin("slot-state-unknown", False, slots={"a": {"state": "broken"}}),
    checkin("slot-state-missing", False, slots={"a": {}}),
    checkin("slot-version-null", True, slots=slot(version=None)),
    checkin("slot-counter-null", True, slots=slot(release_counter=None)),
    checkin("slot-sha256", True, slots=slot(sha256=SHA)),
    checkin("slot-sha256-null", False, slots=slot(sha256=None)),
    checkin("slot-sha256-upper-case", False, slots=slot(sha256=SHA.upper())),
    checkin("slot-sha256-63", False, slots=slot(sha256=SHA[:63])),
    checkin("slot-sha256-final-newline", False, slots=slot(sha256=SHA + "\n")),
    checkin("slot-version-not-semver", False, slots=slot(version="1.0")),
    checkin("slot-counter-2.0", False, "integer-literal", slots=slot(release_counter=2.0)),
    checkin("slot-counter-negative", False, slots=slot(release_counter=-1)),
    checkin("slot-unknown-field", False, slots=slot(boot_count=3)),
    checkin("slot-not-object", False, slots={"a": "active"}),
    checkin("slots-list", False, slots=["a"]),
    checkin("slots-null", False, slots=None),
    checkin("last-update-null", True, last_update=None),
    checkin("last-update-absent", True, last_update=DROP),
    *(checkin(f"last-update-{r}", True, last_update=update(result=r)) for r in UPDATE_RESULTS),
    checkin("last-update-result-unknown", False, last_update=update(result="ok")),
    checkin("last-update-error-512", True, last_update=update(error="e" * 512)),
    checkin("last-update-error-512-astral", True, last_update=update(error="😀" * 512)),
    checkin("last-update-error-513", False, last_update=update(error="e" * 513)),
    checkin("last-update-error-nul", True, last_update=update(error="a\x00b")),
    checkin("last-update-error-lone-surrogate", True, last_update=update(error="\ud800")),
    checkin("last-update-error-null", False, last_update=update(error=None)),
    checkin("last-update-counter-1.0", False, "integer-literal",
            last_update=update(release_counter=1.0)),
    checkin("last-update-unknown-field", False, last_update=update(by="me")),
    *(checkin(f"last-update-missing-{f}", False, last_update=update(**{f: DROP}))
      for f in ("version", "release_counter", "result", "at")),
    checkin("last-update-list", False, last_update=[]),
    *(checkin(f"therapy-{s}", True, therapy={"state": s}) for s in THERAPY_STATES),
    checkin("therapy-state-unknown", False, therapy={"state": "paused"}),
    checkin("therapy-state-missing", False, therapy={}),
    checkin("therapy-unknown-field", False, therapy={"state": "idle", "rate": 5}),
    checkin("therapy-string", False, therapy="idle"),
    *(checkin(f"agent-state-{s}", True, agent_state=s) for s in AGENT_STATES),
    checkin("agent-state-null", True, agent_state=None),
    checkin("agent-state-unknown", False, agent_state="hacking"),
    checkin("agent-state-number", False, agent_state=1),
    *(checkin(f"since-{n}", ok, rule, therapy={"state": "idle", "since": t})
      for n, t, ok, rule in TIMES),
    *(checkin(f"last-update-at-{n}", ok, rule, last_update=update(at=t))
      for n, t, ok, rule in TIMES),
    checkin("product-other-than-enrolled-409", True, product="other-pump"),
    checkin("hardware-id-other-than-enrolled-409", True, hardware_id="rev-z"),
    checkin("product-reserved", False, product="root"),
    checkin("product-upper-case", False, product="Sigma"),
    checkin("hardware-id-65", False, hardware_id="R" * 65),
    checkin("unknown-field", False, firmware_url="http://evil.example"),
    *(checkin(f"missing-{f}", False, **{f: DROP})
      for f in ("product", "hardware_id", "version", "release_counter", "slots", "therapy")),
    whole("array", [checkin_report(Pump("x"))]),
    whole("null", None),
]  # fmt: skip

LARGEST_EVENT = event(kind="self-test-fail", at=TIME_40, detail=DETAIL_2048)
EVENT_BATCHES: list[Case] = [
    whole("valid", events(event()), True),
    *(whole(f"kind-{k}", events(event(kind=k)), True) for k in EVENT_KINDS),
    whole("kind-unknown", events(event(kind="exploded"))),
    whole("kind-null", events(event(kind=None))),
    whole("kind-upper-case", events(event(kind="CHECK"))),
    whole("100-events", events(*[event()] * 100), True),
    whole("100-largest-events", events(*[LARGEST_EVENT] * 100), True),
    whole("101-events", events(*[event()] * 101)),
    whole("no-events", events()),
    whole("events-object", {"events": {}}),
    whole("events-null", {"events": None}),
    whole("event-string", {"events": ["check"]}),
    whole("event-missing-kind", events(event(kind=DROP))),
    whole("event-missing-at", events(event(at=DROP))),
    whole("event-unknown-field", events(event(severity=1))),
    whole("detail-absent", events(event(detail=DROP)), True),
    whole("detail-empty", events(event(detail={})), True),
    whole("detail-2048", events(event(detail=DETAIL_2048)), True),
    whole("detail-2049", events(event(detail=DETAIL_2049)), False, "detail-size"),
    whole("detail-2048-escaped", events(event(detail=ESCAPED_2048)), True),
    whole("detail-2054-escaped", events(event(detail=ESCAPED_2054)), False, "detail-size"),
    whole("detail-second-event-2049", events(event(), event(detail=DETAIL_2049)), False,
          "detail-size"),
    whole("detail-nested-61", events(event(detail=nested(61))), True),
    whole("detail-nested-62", events(event(detail=nested(62))), False, "strict-json"),
    whole("detail-nan", events(event(detail={"x": float("nan")})), False, "strict-json"),
    whole("detail-infinity", events(event(detail={"x": float("inf")})), False, "strict-json"),
    whole("detail-huge-integer", events(event(detail={"x": 10**400})), False, "strict-json"),
    whole("detail-largest-double", events(event(detail={"x": 1.7976931348623157e308})), True),
    whole("detail-2-64", events(event(detail={"x": 2**64, "y": 1.0, "z": [True, None]})), True),
    whole("detail-nul", events(event(detail={"x": "a\x00b"})), True),
    whole("detail-lone-surrogate", events(event(detail={"x": "\ud800"})), True),
    whole("detail-null", events(event(detail=None))),
    whole("detail-list", events(event(detail=[]))),
    whole("detail-string", events(event(detail="x"))),
    *(whole(f"at-{n}", events(event(at=t)), ok, rule) for n, t, ok, rule in TIMES),
    whole("unknown-field", {**events(event()), "more": []}),
    whole("missing-events", {}),
    whole("array", [event()]),
]  # fmt: skip

TABLES = {"enrollment": (ENROLL, ENROLLMENTS), "checkin": (CHECKIN, CHECKINS),
          "events": (EVENTS, EVENT_BATCHES)}  # fmt: skip

#: Each rule JSON Schema cannot state: where the document states it, and words it uses.
RULE_TEXT: dict[str, tuple[str, str]] = {
    "strict-json": ("/info/description", "nested at most 64 deep"),
    "integer-literal": ("/components/schemas/Checkin/properties/release_counter/description",
                        "1.0"),
    "utc-range": ("/components/schemas/Checkin/properties/therapy/properties/since/description",
                  "years 1 to 9999"),
    "delegated-product": ("/components/schemas/Enrollment/properties/product/description",
                          "delegated"),
    "key-point": ("/components/schemas/Enrollment/properties/public_key/description",
                  "small order"),
    "detail-size": ("/components/schemas/Events/properties/events/items/properties/detail/"
                    "description", "At most 2048 characters as compact JSON"),
}  # fmt: skip


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    spec: dict[str, Any] = r.get_json()
    validate(spec)
    return spec


def _compare(
    contract: BodyContract,
    client: FlaskClient,
    operation: tuple[str, str],
    case: Case,
    body: Any,
    pump: Pump,
    admin: dict[str, str],
) -> list[str]:
    """What is wrong with one case: each verdict against the table."""
    schema = contract.judge(operation, body)
    server = send(contract, client, operation, body, pump=pump, admin=admin)
    rule = beyond_schema(operation, body) if schema.accepted else None
    problems = []
    if server.accepted != case.accepted:
        problems.append(f"server {'accepts' if server.accepted else 'refuses'} ({server.why})")
    if schema.accepted != (case.accepted or case.rule is not None):
        problems.append(f"document {'accepts' if schema.accepted else 'refuses'} ({schema.why})")
    if server.problem:
        problems.append(server.problem)
    if rule != case.rule:
        problems.append(f"rule beyond JSON Schema is {rule}, the table says {case.rule}")
    return [f"{case.name}: {p}" for p in problems]


def test_the_document_accepts_a_body_exactly_when_the_server_does(
    client: FlaskClient, admin_headers: dict[str, str], pump: Pump, document: dict[str, Any]
) -> None:
    # One database for all three tables: a new PostgreSQL database costs more
    # than all the cases of a table.
    contract = BodyContract(document)
    problems = []
    for table, (operation, cases) in TABLES.items():
        for i, case in enumerate(cases):
            # Every enrollment is a new pump, so only the case's change decides.
            sender = Pump(f"contract-{i}") if operation == ENROLL else pump
            body = case.build(sender)
            found = _compare(contract, client, operation, case, body, sender, admin_headers)
            problems += [f"{table} {p}" for p in found]
    assert not problems, "\n".join(problems)


def test_the_largest_accepted_bodies_fit_the_body_limits_as_compact_json() -> None:
    # The document promises that every body its schema accepts fits when sent
    # as compact JSON; these two are the largest the schemas allow, and the
    # tables above send them to the server.
    assert len(compact(LARGEST_CHECKIN)) <= MAX_CHECKIN_BODY
    assert len(compact(events(*[LARGEST_EVENT] * 100))) <= MAX_EVENTS_BODY


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_each_rule_beyond_json_schema_is_stated_in_the_document(document: dict[str, Any]) -> None:
    for rule, (pointer, words) in RULE_TEXT.items():
        node: Any = document
        for part in pointer.strip("/").split("/"):
            node = node[part]
        assert words in node, (rule, pointer, node)


def test_each_rule_beyond_json_schema_is_exercised_by_the_tables() -> None:
    named = {case.rule for _, cases in TABLES.values() for case in cases} - {None}
    assert named == set(RULE_TEXT)


# ISO 8601 forms that are not RFC 3339 date-times, all of which Python's
# datetime.fromisoformat reads.
ISO_8601_NOT_RFC_3339 = [
    "2026-01-01 12:00:00Z",
    "20260101T120000Z",
    "2026-01-01T12:00Z",
    "2026-01-01T12Z",
    "2026-01-01T12:00:00+01",
    "2026-01-01T12:00:00+0100",
    "2026-01-01T12:00:00,5Z",
    "2026-W01-4T12:00:00Z",
    "2026-01-01T12:00:00+00:60",
    "2026-01-01T12:00:00+01:00:30",
]


def _with_time(operation: tuple[str, str], pump: Pump, at: str) -> dict[str, Any]:
    if operation == CHECKIN:
        return checkin_report(pump, therapy={"state": "idle", "since": at})
    return events(event(at=at))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_document_refuses_iso_8601_times_that_are_not_rfc_3339(
    client: FlaskClient, pump: Pump, document: dict[str, Any]
) -> None:
    contract = BodyContract(document)
    for at in ISO_8601_NOT_RFC_3339:
        for operation in (CHECKIN, EVENTS):
            assert not contract.judge(operation, _with_time(operation, pump, at)).accepted, at


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_server_refuses_iso_8601_times_that_are_not_rfc_3339(
    client: FlaskClient, admin_headers: dict[str, str], pump: Pump, document: dict[str, Any]
) -> None:
    contract = BodyContract(document)
    accepted = [
        f"{operation[0]} {at!r}"
        for at in ISO_8601_NOT_RFC_3339
        for operation in (CHECKIN, EVENTS)
        if send(contract, client, operation, _with_time(operation, pump, at), pump=pump,
                admin=admin_headers).accepted
    ]  # fmt: skip
    assert not accepted, "\n".join(accepted)
