"""Judge one request body twice: by the OpenAPI document and by the real server.

The document's request schema is validated with jsonschema's Draft 2020-12
validator, format assertions on and every ``$ref`` resolved through a
``referencing`` registry that holds the served document. The server judges
the same bytes through the Flask test client on a real database, signed by a
real enrolled pump where the route needs it. A few server rules cannot be put
in JSON Schema (the document states them in words); :func:`beyond_schema`
names the one a body breaks, so a comparison can tell a documented gap from a
mismatch.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from nacl.bindings import crypto_core_ed25519_is_valid_point
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from pumpguard.jsonutil import MAX_DEPTH
from repo_support import PRODUCT
from server_support import DEVICES, Pump
from update_server.devices import MAX_EVENT_DETAIL

__all__ = [
    "CHECKIN",
    "ENROLL",
    "EVENTS",
    "BodyContract",
    "Verdict",
    "beyond_schema",
    "compact",
    "send",
    "server_verdict",
]

#: The operations with a JSON request body: (path in the document, method).
ENROLL = ("/api/v1/devices", "post")
CHECKIN = ("/api/v1/devices/{device_id}/checkin", "post")
EVENTS = ("/api/v1/devices/{device_id}/events", "post")

_DOCUMENT_URI = "urn:pumpguard:openapi"
# 2xx: stored; 409: well-formed but contradicting the enrollment (another
# product or hardware id than enrolled, a device id or key enrolled before),
# which is about state, not the body's form. 400, 413 and 422 refuse the body.
_ACCEPTED = {200, 201, 409}
_REFUSED = {400, 413, 422}


def compact(body: Any) -> bytes:
    """The body as compact JSON, the encoding every accepted body fits in."""
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Verdict:
    """Whether one side accepted a body, and what it said.

    ``problem`` is set when the server's answer itself breaks the document
    (a status it does not list, a body not of the documented schema).
    """

    accepted: bool
    why: str
    problem: str | None = None


class BodyContract:
    """The request body schemas of one served OpenAPI document."""

    def __init__(self, document: dict[str, Any]) -> None:
        # Without rfc3339-validator jsonschema silently skips date-time.
        if "date-time" not in Draft202012Validator.FORMAT_CHECKER.checkers:
            raise AssertionError("jsonschema cannot check date-time: install rfc3339-validator")
        resource = DRAFT202012.create_resource(document)
        self._registry: Registry[Any] = Registry().with_resource(_DOCUMENT_URI, resource)
        self._document = document
        self._validators: dict[str, Draft202012Validator] = {}

    def _validator(self, *segments: str) -> Draft202012Validator:
        pointer = "".join(
            "/" + quote(s.replace("~", "~0").replace("/", "~1"), safe="") for s in segments
        )
        if pointer not in self._validators:
            self._validators[pointer] = Draft202012Validator(
                {"$ref": f"{_DOCUMENT_URI}#{pointer}"},
                registry=self._registry,
                format_checker=Draft202012Validator.FORMAT_CHECKER,
            )
        return self._validators[pointer]

    def validator(self, operation: tuple[str, str]) -> Draft202012Validator:
        """The validator of ``operation``'s JSON request body, as the document states it."""
        path, method = operation
        return self._validator(
            "paths", path, method, "requestBody", "content", "application/json", "schema"
        )

    def response_problem(self, operation: tuple[str, str], status: int, body: Any) -> str | None:
        """What is wrong with an answer by the document: undocumented status or body."""
        path, method = operation
        segments = ["paths", path, method, "responses", str(status)]
        response = self._document["paths"][path][method]["responses"].get(str(status))
        if response is None:
            return f"status {status} is not documented"
        if "$ref" in response:  # an OpenAPI Response Object, e.g. #/components/responses/E400
            segments = response["$ref"].removeprefix("#/").split("/")
        error = next(iter(self._validator(*segments, "content", "application/json", "schema")
                          .iter_errors(body)), None)  # fmt: skip
        return None if error is None else f"the {status} answer: {error.message[:160]}"

    def judge(self, operation: tuple[str, str], body: Any) -> Verdict:
        """The document's verdict on ``body`` (JSON Schema only)."""
        errors = sorted(self.validator(operation).iter_errors(body), key=lambda e: e.path)
        if not errors:
            return Verdict(True, "valid")
        first = errors[0]
        return Verdict(False, f"{'/'.join(map(str, first.absolute_path))}: {first.message[:160]}")


def server_verdict(status: int, text: str) -> Verdict:
    """Classify a server answer; anything but accept or refuse fails the test."""
    if status in _ACCEPTED:
        return Verdict(True, f"{status}")
    if status in _REFUSED:
        return Verdict(False, f"{status} {text.strip()[:200]}")
    raise AssertionError(f"the server answered {status}, neither accepting nor refusing: {text}")


def send(
    contract: BodyContract,
    client: FlaskClient,
    operation: tuple[str, str],
    body: Any,
    *,
    pump: Pump,
    admin: dict[str, str],
) -> Verdict:
    """The real server's verdict on ``body`` sent compactly to ``operation``.

    The answer is checked against the document's responses too.
    """
    data = compact(body)
    if operation == ENROLL:
        r = client.post(DEVICES, data=data, headers=admin, content_type="application/json")
    else:
        r = pump.post(client, operation[0].rsplit("/", 1)[1], data)
    verdict = server_verdict(r.status_code, r.get_data(as_text=True))
    problem = contract.response_problem(operation, r.status_code, r.get_json(silent=True))
    return replace(verdict, problem=problem)


# ------------------------------------------------------- beyond JSON Schema


def _values(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _values(item)
    elif isinstance(value, list):
        for item in value:
            yield from _values(item)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _outside_double(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return not math.isfinite(value)
    return isinstance(value, int) and abs(value) > sys.float_info.max


def _utc_out_of_range(text: str) -> bool:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return False  # not this rule: a time the schema should have refused
    try:
        parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return True
    return False


def _timestamps(operation: tuple[str, str], body: dict[str, Any]) -> list[str]:
    if operation == CHECKIN:
        found = [body["therapy"].get("since"), (body.get("last_update") or {}).get("at")]
        return [t for t in found if t is not None]
    if operation == EVENTS:
        return [event["at"] for event in body["events"]]
    return []


def beyond_schema(operation: tuple[str, str], body: Any) -> str | None:
    """The server rule outside JSON Schema that ``body`` breaks, if any.

    Only meaningful for a body the document's JSON Schema accepts: each rule
    is one the document states in a description (test_openapi_contract.py
    checks it does). The names are the keys of ``RULE_TEXT`` there.
    """
    if any(_outside_double(v) for v in _values(body)) or _depth(body) > MAX_DEPTH:
        return "strict-json"
    if operation != EVENTS and any(isinstance(v, float) for v in _values(body)):
        return "integer-literal"
    if any(_utc_out_of_range(t) for t in _timestamps(operation, body)):
        return "utc-range"
    if operation == ENROLL:
        if body["product"] != PRODUCT:  # the only product the test repository delegates
            return "delegated-product"
        if not crypto_core_ed25519_is_valid_point(bytes.fromhex(body["public_key"])):
            return "key-point"
    if operation == EVENTS:
        for event in body["events"]:
            detail = event.get("detail", {})
            if len(json.dumps(detail, separators=(",", ":"))) > MAX_EVENT_DETAIL:
                return "detail-size"
    return None
