"""The agent's state machine: the states, the one transition table, the record.

DESIGN.md, Device agent: every state is persisted durably *before* it is acted
on, and every state's action is idempotent, so the agent can be killed anywhere
and, started again, simply re-runs the action of the state it finds on disk.

The persisted record (``state.json``) holds the state, how often the current
state's action was started without finishing (the loop counter that stops a
state that keeps crashing the pump; in ``downloading``, attempts in a row that
made no progress), the update in progress, the outcome to report and, after a
download was given up, where it can resume (:class:`ResumePoint`). Facts that
must outlive an update live in their own files: the anti-rollback counter
(:class:`CounterStore`) and what each slot holds (:class:`SlotRecords`).

Fields added later have defaults, so a state file written by an older agent
still loads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from device_agent import _durable
from device_agent.errors import AgentError
from pumpguard.contract import AgentState, UpdateResult

__all__ = [
    "TRANSITIONS",
    "AgentState",
    "CounterStore",
    "IllegalTransitionError",
    "Outcome",
    "PendingUpdate",
    "ResumePoint",
    "SlotImage",
    "SlotRecords",
    "StateRecord",
    "StateStore",
    "check_transition",
]

_MAX_FILE = 64 * 1024


S = AgentState

#: The only moves the agent may make. A state may also stay where it is
#: (waiting, deferred, retrying a transfer); that is listed explicitly.
TRANSITIONS: Mapping[AgentState, frozenset[AgentState]] = {
    # Nothing to do, or a poll is due.
    S.IDLE: frozenset({S.CHECKING}),
    # Check in, learn the assignment, verify it through TUF.
    S.CHECKING: frozenset({S.IDLE, S.DOWNLOADING, S.REPORTING}),
    # Stream into the inactive slot; stays here to retry or resume.
    S.DOWNLOADING: frozenset({S.DOWNLOADING, S.VERIFIED, S.REPORTING}),
    # The slot holds the verified image; never bootable yet.
    S.VERIFIED: frozenset({S.WAITING, S.REPORTING}),
    # Therapy interlock, power and maintenance window.
    S.WAITING: frozenset({S.WAITING, S.INSTALLING, S.REPORTING}),
    # Re-verify the slot, switch the boot target with a trial counter.
    S.INSTALLING: frozenset({S.REBOOTING, S.ROLLING_BACK, S.REPORTING}),
    # Wait for a safe moment again, then reboot into the trial slot.
    S.REBOOTING: frozenset({S.REBOOTING, S.VERIFYING_BOOT, S.ROLLING_BACK}),
    # Booted: which slot? self-test, then commit when it is safe.
    S.VERIFYING_BOOT: frozenset({S.VERIFYING_BOOT, S.COMMITTED, S.ROLLING_BACK}),
    S.COMMITTED: frozenset({S.REPORTING}),
    # Cancel the trial and, if running the bad slot, reboot into the good one.
    S.ROLLING_BACK: frozenset({S.ROLLING_BACK, S.REPORTING}),
    # Queue the outcome for the server; the outbox delivers it.
    S.REPORTING: frozenset({S.IDLE}),
}


class IllegalTransitionError(AgentError):
    """The agent tried a move the transition table does not allow (a bug)."""


def check_transition(current: AgentState, new: AgentState) -> None:
    """Raise unless ``current -> new`` is in :data:`TRANSITIONS`."""
    if new not in TRANSITIONS[current]:
        raise IllegalTransitionError(f"illegal agent transition {current} -> {new}")


@dataclass(frozen=True)
class PendingUpdate:
    """The release being installed, as verified through TUF.

    Attributes:
        path: TUF target path of the firmware.
        version: Semantic version.
        release_counter: Its anti-rollback counter.
        length: Exact length in bytes (from the signed target).
        hashes: Every hash of the signed target, algorithm -> hex.
        url: Where the firmware is fetched from.
        slot: The inactive slot it goes into.
        downloaded: Bytes durably written into the slot so far.
        selftest_passed: The new image passed its self-test (commit pending).
        transfer_seconds: Time this round of downloading spent on the
            server (waiting for its bytes) and in the pauses between failed
            attempts, summed over the attempts; bounded by the firmware's
            deadline (threat AGT-SLOW).
        last_error: Reason of the last failed download attempt (reported
            when the attempts without progress run out).
    """

    path: str
    version: str
    release_counter: int
    length: int
    hashes: dict[str, str]
    url: str
    slot: str
    downloaded: int = 0
    selftest_passed: bool = False
    transfer_seconds: float = 0.0
    last_error: str | None = None


@dataclass(frozen=True)
class ResumePoint:
    """The durable prefix a given-up download left in a slot.

    Giving up a download (attempts without progress, or its time used up)
    ends the round, so that the pump reports and checks in again, but keeps
    the checkpointed bytes: when the same target is assigned again, the next
    round resumes from here instead of byte 0. A prefix that is not the
    image's still fails the final hash check (threat AGT-TAMPER).

    Attributes:
        path: TUF target path.
        length: Its signed length.
        hashes: Its signed hashes.
        slot: The slot holding the prefix.
        downloaded: Bytes of the image durable in the slot.
    """

    path: str
    length: int
    hashes: dict[str, str]
    slot: str
    downloaded: int

    @classmethod
    def of(cls, update: PendingUpdate) -> ResumePoint | None:
        """Where ``update``'s download stands, or None if nothing is durable yet."""
        if not 0 < update.downloaded < update.length:
            return None
        return cls(update.path, update.length, dict(update.hashes), update.slot, update.downloaded)

    def fits(self, update: PendingUpdate) -> bool:
        """Whether ``update`` is the same target (path, length, hashes) into the same slot."""
        return (
            (self.path, self.length, self.slot) == (update.path, update.length, update.slot)
            and self.hashes == update.hashes
            and bool(update.hashes)
            and 0 < self.downloaded < self.length
        )


@dataclass(frozen=True)
class Outcome:
    """How an update ended, waiting to be reported.

    Attributes:
        result: ``committed``, ``rolled-back`` or ``failed``.
        reason: Machine-readable reason (``None`` for committed).
        error: A human sentence.
        version: Version of the release concerned.
        release_counter: Its counter.
        at: ISO 8601 time.
    """

    result: UpdateResult
    reason: str | None
    error: str | None
    version: str | None
    release_counter: int | None
    at: str


def _outcome(doc: dict[str, Any]) -> Outcome:
    """An :class:`Outcome` read back from ``state.json``."""
    return Outcome(**{**doc, "result": UpdateResult(doc["result"])})


@dataclass(frozen=True)
class StateRecord:
    """What ``state.json`` holds."""

    state: AgentState = AgentState.IDLE
    repeats: int = 0
    update: PendingUpdate | None = None
    outcome: Outcome | None = None
    deferred: str | None = None
    failed_targets: tuple[str, ...] = field(default_factory=tuple)
    resume: ResumePoint | None = None

    def to_json(self) -> bytes:
        """Serialise for the state file."""
        doc = asdict(self)
        doc["state"] = str(self.state)
        doc["failed_targets"] = list(self.failed_targets)
        return json.dumps(doc, sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes, source: str) -> StateRecord:
        """Parse a state file. Raises AgentError naming the file when corrupt."""
        try:
            doc = json.loads(data)
            update = doc.get("update")
            outcome = doc.get("outcome")
            resume = doc.get("resume")
            return cls(
                state=AgentState(doc["state"]),
                repeats=int(doc.get("repeats", 0)),
                update=PendingUpdate(**update) if update else None,
                outcome=_outcome(outcome) if outcome else None,
                deferred=doc.get("deferred"),
                failed_targets=tuple(doc.get("failed_targets", ())),
                resume=ResumePoint(**resume) if resume else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise AgentError(f"agent state {source} is corrupt: {e}") from e


class StateStore:
    """``state.json`` in the state directory, replaced atomically."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "state.json"

    def load(self) -> StateRecord:
        """The persisted record, or a fresh idle one on first start."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return StateRecord()
        except OSError as e:
            raise AgentError(f"cannot read agent state {self.path}: {e.strerror}") from e
        return StateRecord.from_json(data, str(self.path))

    def save(self, record: StateRecord) -> None:
        """Persist ``record`` durably (temp file, fsync, rename, fsync dir)."""
        _durable.atomic_write(self.path, record.to_json(), "state")

    def transition(self, record: StateRecord, new: AgentState, **changes: Any) -> StateRecord:
        """Check ``record.state -> new`` against the table and persist it.

        Moving to another state resets the loop counter; staying resets it too
        (the step finished, it is waiting, not crashing).
        """
        check_transition(record.state, new)
        updated = replace(record, state=new, repeats=0, **changes)
        self.save(updated)
        return updated


class CounterStore:
    """The anti-rollback counter: the lowest release_counter the pump accepts.

    It only ever moves up, and only on commit (threat AGT-ROLLBACK). Kept in its
    own file so that no other write can disturb it.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "anti-rollback.json"

    def read(self) -> int:
        """The current counter (0 before the first commit)."""
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as e:
            raise AgentError(f"anti-rollback counter {self.path} is unreadable: {e}") from e
        value = doc.get("release_counter") if isinstance(doc, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise AgentError(f"anti-rollback counter {self.path} is corrupt")
        return value

    def raise_to(self, value: int) -> None:
        """Raise the counter to ``value``; lower values are ignored."""
        if value > self.read():
            _durable.atomic_write(
                self.path, json.dumps({"release_counter": value}).encode(), "anti-rollback"
            )


@dataclass(frozen=True)
class SlotImage:
    """What a slot holds, recorded once its image was verified."""

    version: str
    release_counter: int
    length: int
    sha256: str
    path: str = ""


class SlotRecords:
    """``slots.json``: slot name -> the verified image it holds (or none)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "slots.json"

    def read(self) -> dict[str, SlotImage]:
        """All records; a slot without one holds nothing known."""
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise AgentError(f"slot records {self.path} are unreadable: {e}") from e
        try:
            return {name: SlotImage(**image) for name, image in doc.items()}
        except (TypeError, AttributeError) as e:
            raise AgentError(f"slot records {self.path} are corrupt: {e}") from e

    def set(self, slot: str, image: SlotImage | None) -> None:
        """Record (or forget, with None) the image in ``slot``; idempotent."""
        records = self.read()
        if image is None:
            if slot not in records:
                return
            del records[slot]
        else:
            if records.get(slot) == image:
                return
            records[slot] = image
        _durable.atomic_write(
            self.path,
            json.dumps({k: asdict(v) for k, v in records.items()}, sort_keys=True).encode(),
            "slot records",
        )
