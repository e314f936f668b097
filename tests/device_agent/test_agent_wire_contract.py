"""The real agent's bodies pass the server's validation and the OpenAPI schema.

Simulated pumps run the real agent against the real server on loopback
through an update that is deferred by an infusion and then committed, and
through one whose self-test fails and is rolled back. Every check-in and
event body the agent actually sent is captured on the wire and must have been
accepted by the server (its validators ran on it) and be valid by the
OpenAPI document's request schema (jsonschema Draft 2020-12, formats on); the
answers must be valid by the document's response schema; the bodies' fields
must be those of the contract's TypedDicts (threats SRV-INPUT,
SRV-DEVICE-SPOOF). One pump's id has colons, which the one device-id rule
allows everywhere now.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from agent_support import World, run_pump
from device_agent.state import AgentState
from pumpguard.contract import (
    CheckinRequest,
    Event,
    EventBatch,
    EventKind,
    LastUpdate,
    SlotReport,
    UpdateResult,
)

_URI = "urn:pumpguard:openapi"
_CHECKIN = "/api/v1/devices/{device_id}/checkin"
_EVENTS = "/api/v1/devices/{device_id}/events"


@dataclass(frozen=True)
class Exchange:
    """One signed request the agent sent, and the server's answer."""

    route: str
    body: Any
    status: int
    answer: Any


class Recorder:
    """WSGI middleware that records the pump's check-ins and event posts."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.exchanges: list[Exchange] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        route = _CHECKIN if path.endswith("/checkin") else _EVENTS
        if environ.get("REQUEST_METHOD") != "POST" or not path.endswith(("/checkin", "/events")):
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        captured: list[str] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.append(status)
            return start_response(status, headers, exc_info)

        answer = b"".join(self.app(environ, capture))
        self.exchanges.append(
            Exchange(route, json.loads(body), int(captured[0].split()[0]), json.loads(answer))
        )
        return [answer]


class Document:
    """The served OpenAPI document's request and response schemas."""

    def __init__(self, base_url: str) -> None:
        doc = json.loads(urllib3.request("GET", base_url + "/api/v1/openapi.json").data)
        self.doc = doc
        self.registry: Registry[Any] = Registry().with_resource(
            _URI, DRAFT202012.create_resource(doc)
        )

    def _validator(self, pointer: str) -> Draft202012Validator:
        return Draft202012Validator(
            {"$ref": f"{_URI}#{pointer}"},
            registry=self.registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )

    def request_errors(self, route: str, body: Any) -> list[str]:
        """Why the document refuses ``body`` as the request of ``route``."""
        pointer = (
            f"/paths/{route.replace('/', '~1')}/post/requestBody/content/application~1json/schema"
        )
        return [e.message for e in self._validator(pointer).iter_errors(body)]

    def answer_errors(self, route: str, status: int, answer: Any) -> list[str]:
        """Why the document refuses ``answer`` as the ``status`` answer of ``route``."""
        response = self.doc["paths"][route]["post"]["responses"][str(status)]
        if "$ref" in response:
            base = response["$ref"].removeprefix("#")
        else:
            base = f"/paths/{route.replace('/', '~1')}/post/responses/{status}"
        validator = self._validator(f"{base}/content/application~1json/schema")
        return [e.message for e in validator.iter_errors(answer)]


def _fields_of(typed: Any) -> tuple[frozenset[str], frozenset[str]]:
    return typed.__required_keys__, typed.__optional_keys__


def _check_typed(value: dict[str, Any], typed: Any, where: str) -> None:
    required, optional = _fields_of(typed)
    assert required <= set(value), f"{where} lacks {sorted(required - set(value))}"
    assert set(value) <= required | optional, (
        f"{where} has {sorted(set(value) - required - optional)}"
    )


def _check_checkin_fields(body: dict[str, Any]) -> None:
    _check_typed(body, CheckinRequest, "check-in")
    for name, slot in body["slots"].items():
        _check_typed(slot, SlotReport, f"slots.{name}")
    if body.get("last_update") is not None:
        _check_typed(body["last_update"], LastUpdate, "last_update")


def _check_events_fields(body: dict[str, Any]) -> None:
    _check_typed(body, EventBatch, "event batch")
    for event in body["events"]:
        _check_typed(event, Event, "event")


def _run_updates(world: World, tmp_path: Path) -> None:
    world.publish("2.0.0", 2)
    deferred = world.new_pump(tmp_path / "deferred", "acme:sigma:0001")
    deferred.set_status("running")
    assert run_pump(deferred, max_steps=20) is AgentState.WAITING
    deferred.set_status("idle")
    assert run_pump(deferred) is AgentState.IDLE
    assert world.device("acme:sigma:0001")["status"]["last_update"]["result"] == "committed"

    world.publish("3.0.0", 3, behaviour="selftest-fail")
    failing = world.new_pump(tmp_path / "failing", "pump-0002")
    assert run_pump(failing) is AgentState.IDLE
    assert world.device("pump-0002")["status"]["last_update"]["result"] == "rolled-back"


def test_real_agent_bodies_pass_server_validation_and_openapi_schema(
    world: World, tmp_path: Path
) -> None:
    recorder = Recorder(world.liar.app)
    world.liar.app = recorder
    _run_updates(world, tmp_path)
    document = Document(world.base_url)

    checkins = [x for x in recorder.exchanges if x.route == _CHECKIN]
    batches = [x for x in recorder.exchanges if x.route == _EVENTS]
    assert checkins and batches
    for exchange in recorder.exchanges:
        assert exchange.status in (200, 201), (exchange.status, exchange.answer, exchange.body)
        assert document.request_errors(exchange.route, exchange.body) == [], exchange.body
        assert document.answer_errors(exchange.route, exchange.status, exchange.answer) == []
    for exchange in checkins:
        _check_checkin_fields(exchange.body)
    for exchange in batches:
        _check_events_fields(exchange.body)

    # The bodies cover the contract: every event kind an update goes through,
    # each outcome, an assignment in the answers.
    kinds = {e["kind"] for x in batches for e in x.body["events"]}
    assert {
        EventKind.CHECK,
        EventKind.DOWNLOAD_START,
        EventKind.DOWNLOAD_DONE,
        EventKind.VERIFIED,
        EventKind.DEFERRED,
        EventKind.INSTALL,
        EventKind.REBOOT,
        EventKind.SELF_TEST_PASS,
        EventKind.SELF_TEST_FAIL,
        EventKind.COMMITTED,
        EventKind.ROLLED_BACK,
    } <= kinds
    results = {
        x.body["last_update"]["result"] for x in checkins if x.body.get("last_update") is not None
    }
    assert {UpdateResult.COMMITTED, UpdateResult.ROLLED_BACK} <= results
    assert any("error" in (x.body.get("last_update") or {}) for x in checkins)
    assert any(x.answer["assigned"] is not None for x in checkins)
    assert {x.body["agent_state"] for x in checkins} >= {AgentState.IDLE}
