"""What the API accepts, as JSON Schema 2020-12 for the OpenAPI document.

Every limit, enumeration and pattern below is built from the wire contract
(:mod:`pumpguard.contract`), which the server validates with and the agent
builds its bodies from, so the document cannot drift from the server
or the pump (issue 19, finding 8; threat SRV-INPUT). Rules
JSON Schema cannot state are written in the schema's ``description``;
tests/update_server/test_openapi_contract.py (a table of boundary cases) and
test_openapi_generated.py (seeded random bodies) send valid and invalid bodies
to the real server and check both verdicts agree, those rules included.

Python's :mod:`re` (which jsonschema uses) lets ``$`` match before a final
newline, and the server uses ``fullmatch``; so every pattern here ends with
``(?![\\s\\S])``, "no character follows", which means the same in ECMA-262 and
in Python and accepts exactly what ``fullmatch`` accepts.
"""

from __future__ import annotations

import re
from typing import Any

# The wire contract (pumpguard.contract): the server validates with exactly
# these patterns, vocabularies and limits, and the agent builds its bodies
# from them, so the document states one definition of each.
from pumpguard.contract import (
    DEVICE_ID_RE,
    HARDWARE_ID_RE,
    HEX64_RE,
    MAX_CHECKIN_BODY,
    MAX_COUNTER,
    MAX_ENROLL_BODY,
    MAX_ERROR_TEXT,
    MAX_EVENT_DETAIL,
    MAX_EVENTS,
    MAX_EVENTS_BODY,
    MAX_SLOTS,
    MAX_TIME_LENGTH,
    MAX_VERSION_LENGTH,
    PRODUCT_RE,
    RESERVED_ROLE_NAMES,
    RFC3339_RE,
    SEMVER_RE,
    SHA256_RE,
    SLOT_NAME_RE,
    AgentState,
    EventKind,
    SlotState,
    TherapyState,
    UpdateResult,
)
from pumpguard.jsonutil import MAX_DEPTH

__all__ = [
    "BODY_LIMITS",
    "COUNTER",
    "DEVICE_ID",
    "EVENT_KIND",
    "HARDWARE_ID",
    "HEX64",
    "INPUT_SCHEMAS",
    "PRODUCT",
    "SEMVER",
    "TIMESTAMP",
    "whole",
]

#: The form of RFC 3339 ``date-time`` that ``datetime.fromisoformat`` reads:
#: upper-case ``T`` and ``Z``, no leap second (Python has none), no year 0.
#: ``format: date-time`` next to it refuses impossible days (February 30).
# Depth of an event's detail object in the events body (body, events array,
# event, detail): what is left of the strict JSON parser's nesting limit.
_DETAIL_DEPTH = MAX_DEPTH - 3


def whole(regex: re.Pattern[str]) -> str:
    """A JSON Schema ``pattern`` that matches exactly what ``regex.fullmatch`` does.

    Args:
        regex: A server pattern in the syntax ECMA-262 and Python share
            (``\\A`` and ``\\Z`` around it are dropped).
    """
    body = regex.pattern.removeprefix(r"\A").removesuffix(r"\Z")
    return f"^(?:{body})(?![\\s\\S])"


#: Request body limits in bytes (413 above), as the devices module enforces.
BODY_LIMITS = {
    "Enrollment": MAX_ENROLL_BODY,
    "Checkin": MAX_CHECKIN_BODY,
    "Events": MAX_EVENTS_BODY,
}

PRODUCT: dict[str, Any] = {
    "type": "string",
    "pattern": whole(PRODUCT_RE),
    "not": {"enum": sorted(RESERVED_ROLE_NAMES)},
    "description": "Product (a TUF role name): 1-64 lower-case letters, digits and inner "
    "hyphens; not a top-level TUF role name.",
}
HARDWARE_ID: dict[str, Any] = {"type": "string", "pattern": whole(HARDWARE_ID_RE)}
DEVICE_ID: dict[str, Any] = {
    "type": "string",
    "pattern": whole(DEVICE_ID_RE),
    "description": "1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit.",
}
SEMVER: dict[str, Any] = {
    "type": "string",
    "maxLength": MAX_VERSION_LENGTH,
    "pattern": whole(SEMVER_RE),
    "description": "Semantic version 2.0.0 (no leading zeros, pre-release and build allowed).",
}
HEX64: dict[str, Any] = {"type": "string", "pattern": whole(SHA256_RE)}
COUNTER: dict[str, Any] = {
    "type": "integer",
    "minimum": 0,
    "maximum": MAX_COUNTER,
    "description": "A JSON integer literal: 1.0 and 1e0 are refused, though JSON Schema "
    "cannot tell them from 1.",
}
TIMESTAMP: dict[str, Any] = {
    "type": "string",
    "format": "date-time",
    "maxLength": MAX_TIME_LENGTH,
    "pattern": whole(RFC3339_RE),
    "description": "RFC 3339 date-time with upper-case T and Z and a time zone, seconds "
    "00-59. Its UTC time must lie in the years 1 to 9999 (0001-01-01T00:30:00+01:00 is "
    "refused; JSON Schema cannot state this).",
}
EVENT_KIND: dict[str, Any] = {"enum": [k.value for k in EventKind]}


def _nullable(schema: dict[str, Any], kind: str) -> dict[str, Any]:
    """``schema`` or null (the server takes null as absent)."""
    return {**schema, "type": [kind, "null"]}


def _closed(required: list[str], properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An object with exactly these fields: unknown fields are refused (400)."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": properties,
        **extra,
    }


_SLOT = _closed(
    ["state"],
    {
        "state": {"enum": [s.value for s in SlotState]},
        "version": _nullable(SEMVER, "string"),
        "release_counter": _nullable(COUNTER, "integer"),
        "sha256": HEX64,
    },
    description="One firmware slot; a null version or release_counter counts as absent.",
)
_LAST_UPDATE = _closed(
    ["version", "release_counter", "result", "at"],
    {
        "version": SEMVER,
        "release_counter": COUNTER,
        "result": {"enum": [r.value for r in UpdateResult]},
        "at": TIMESTAMP,
        "error": {"type": "string", "maxLength": MAX_ERROR_TEXT},
    },
)
_EVENT = _closed(
    ["kind", "at"],
    {
        "kind": EVENT_KIND,
        "at": TIMESTAMP,
        "detail": {
            "type": "object",
            "description": f"Free-form, default {{}}. At most {MAX_EVENT_DETAIL} characters as "
            "compact JSON with non-ASCII characters escaped (Python json.dumps(detail, "
            f"separators=(',', ':'))), and nested at most {_DETAIL_DEPTH} deep counting the "
            "detail object itself (the body's strict JSON depth limit). JSON Schema cannot "
            "state either; the server refuses the batch (400).",
        },
    },
)

#: The request body schemas, for ``components.schemas``.
INPUT_SCHEMAS: dict[str, dict[str, Any]] = {
    "Enrollment": _closed(
        ["device_id", "hardware_id", "product", "public_key"],
        {
            "device_id": DEVICE_ID,
            "hardware_id": HARDWARE_ID,
            "product": {
                **PRODUCT,
                "description": PRODUCT["description"] + " It must be delegated in the "
                "server's TUF repository (pumpguard repo add-product), else 400; JSON Schema "
                "cannot state this.",
            },
            "public_key": {
                "type": "string",
                "pattern": whole(HEX64_RE),
                "description": "Raw Ed25519 public key, hex in either case (stored in lower "
                "case). It must be a canonical encoding of a point of the prime-order "
                "subgroup, not of small order, else 400 (the 32 zero bytes are refused); "
                "JSON Schema cannot state this.",
            },
        },
    ),
    "Checkin": _closed(
        ["product", "hardware_id", "version", "release_counter", "slots", "therapy"],
        {
            "product": PRODUCT,
            "hardware_id": HARDWARE_ID,
            "version": SEMVER,
            "release_counter": COUNTER,
            "slots": {
                "type": "object",
                "maxProperties": MAX_SLOTS,
                "propertyNames": {"pattern": whole(SLOT_NAME_RE)},
                "additionalProperties": _SLOT,
            },
            "last_update": {"anyOf": [{"type": "null"}, _LAST_UPDATE]},
            "therapy": _closed(
                ["state"], {"state": {"enum": [s.value for s in TherapyState]}, "since": TIMESTAMP}
            ),
            "agent_state": {"enum": [*(s.value for s in AgentState), None]},
        },
        description="What the pump runs. product and hardware_id must be those it was "
        "enrolled with, else 409 (not a matter of the body's form).",
    ),
    "Events": _closed(
        ["events"],
        {"events": {"type": "array", "minItems": 1, "maxItems": MAX_EVENTS, "items": _EVENT}},
    ),
}
