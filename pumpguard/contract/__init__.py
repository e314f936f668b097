"""The wire contract between a pump and the update server, written once.

Everything a pump sends to ``/api/v1/devices/<id>/...`` and what it gets back
is defined here: the identifier rules (public compiled patterns and
validators), the vocabularies (:class:`~enum.StrEnum`), the bodies
(:class:`~typing.TypedDict`) and their size limits. The agent builds its
bodies from these types, the server validates with these rules and limits,
and the OpenAPI document (``update_server._openapi_inputs``) is built from
them. tests/device_agent/test_agent_wire_contract.py runs the real agent's
bodies through the server and the OpenAPI schema, and
tests/pumpguard/test_wire_contract.py a table of identifiers through all
three (threat SRV-INPUT).

This package imports only the standard library and :mod:`pumpguard.errors`,
so the agent can use it without Flask or the server.

Every pattern is meant for ``fullmatch`` (``$`` would also match before a
final newline) and spells digits as ``[0-9]`` under ``re.ASCII`` (``\\d``
matches any Unicode digit, which ``int()`` then parses).
"""

from pumpguard.contract.bodies import (
    AssignedFirmware,
    AssignedRelease,
    AssignedSbom,
    CheckinAnswer,
    CheckinRequest,
    Event,
    EventBatch,
    LastUpdate,
    SlotReport,
    TherapyReport,
)
from pumpguard.contract.identifiers import (
    DEVICE_ID_RE,
    HARDWARE_ID_RE,
    HEX64_RE,
    MAX_CHECKIN_BODY,
    MAX_COUNTER,
    MAX_DEVICE_ID_LENGTH,
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
    is_device_id,
    is_rfc3339,
    validate_device_id,
    validate_hardware_id,
    validate_product,
    validate_sha256,
    validate_slot_name,
    validate_version,
)
from pumpguard.contract.vocabulary import (
    AgentState,
    EventKind,
    HttpStatusReason,
    Reason,
    RefusalReason,
    SlotState,
    TherapyState,
    UpdateResult,
    http_reason,
    parse_reason,
)

__all__ = [
    "DEVICE_ID_RE",
    "HARDWARE_ID_RE",
    "HEX64_RE",
    "MAX_CHECKIN_BODY",
    "MAX_COUNTER",
    "MAX_DEVICE_ID_LENGTH",
    "MAX_ENROLL_BODY",
    "MAX_ERROR_TEXT",
    "MAX_EVENTS",
    "MAX_EVENTS_BODY",
    "MAX_EVENT_DETAIL",
    "MAX_SLOTS",
    "MAX_TIME_LENGTH",
    "MAX_VERSION_LENGTH",
    "PRODUCT_RE",
    "RESERVED_ROLE_NAMES",
    "RFC3339_RE",
    "SEMVER_RE",
    "SHA256_RE",
    "SLOT_NAME_RE",
    "AgentState",
    "AssignedFirmware",
    "AssignedRelease",
    "AssignedSbom",
    "CheckinAnswer",
    "CheckinRequest",
    "Event",
    "EventBatch",
    "EventKind",
    "HttpStatusReason",
    "LastUpdate",
    "Reason",
    "RefusalReason",
    "SlotReport",
    "SlotState",
    "TherapyReport",
    "TherapyState",
    "UpdateResult",
    "http_reason",
    "is_device_id",
    "is_rfc3339",
    "parse_reason",
    "validate_device_id",
    "validate_hardware_id",
    "validate_product",
    "validate_sha256",
    "validate_slot_name",
    "validate_version",
]
