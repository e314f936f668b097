"""The bodies of the wire contract, as TypedDicts.

No ``from __future__ import annotations``: the NotRequired fields must be seen
at run time (``__optional_keys__``).
"""

from typing import NotRequired, TypedDict

from pumpguard.contract.vocabulary import (
    AgentState,
    EventKind,
    SlotState,
    TherapyState,
    UpdateResult,
)

__all__ = [
    "AssignedFirmware",
    "AssignedRelease",
    "AssignedSbom",
    "CheckinAnswer",
    "CheckinRequest",
    "Event",
    "EventBatch",
    "LastUpdate",
    "SlotReport",
    "TherapyReport",
]

# ------------------------------------------------------------------ bodies


class SlotReport(TypedDict):
    """One firmware slot in a check-in; the image fields when it holds one."""

    state: SlotState
    version: NotRequired[str | None]
    release_counter: NotRequired[int | None]
    sha256: NotRequired[str]


class LastUpdate(TypedDict):
    """How the last update attempt went."""

    version: str
    release_counter: int
    result: UpdateResult
    at: str
    error: NotRequired[str]


class TherapyReport(TypedDict):
    """What the therapy controller says (the agent sends ``state`` only)."""

    state: TherapyState
    since: NotRequired[str]


class CheckinRequest(TypedDict):
    """The body of ``POST /api/v1/devices/<id>/checkin``."""

    product: str
    hardware_id: str
    version: str
    release_counter: int
    slots: dict[str, SlotReport]
    therapy: TherapyReport
    last_update: NotRequired[LastUpdate | None]
    agent_state: NotRequired[AgentState | None]


class AssignedFirmware(TypedDict):
    """The firmware target of an assigned release."""

    path: str
    length: int
    sha256: str


class AssignedSbom(TypedDict):
    """The SBOM target of an assigned release."""

    path: str


class AssignedRelease(TypedDict):
    """The release a check-in answer assigns (advice: TUF decides)."""

    product: str
    version: str
    release_counter: int
    firmware: AssignedFirmware
    sbom: AssignedSbom


class CheckinAnswer(TypedDict):
    """The server's answer to a check-in."""

    assigned: AssignedRelease | None
    poll_interval: float
    server_time: str


class Event(TypedDict):
    """One update event."""

    kind: EventKind
    at: str
    detail: NotRequired[dict[str, object]]


class EventBatch(TypedDict):
    """The body of ``POST /api/v1/devices/<id>/events``: 1 to :data:`MAX_EVENTS` events."""

    events: list[Event]
