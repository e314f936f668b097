"""The one transition table and the durable state record."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_agent.errors import AgentError
from device_agent.state import (
    TRANSITIONS,
    AgentState,
    CounterStore,
    IllegalTransitionError,
    PendingUpdate,
    SlotImage,
    SlotRecords,
    StateRecord,
    StateStore,
    check_transition,
)

S = AgentState


def test_every_state_is_in_the_table_and_reachable_from_idle() -> None:
    assert set(TRANSITIONS) == set(AgentState)
    seen, todo = {S.IDLE}, [S.IDLE]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(AgentState)


def test_every_state_leads_back_to_idle() -> None:
    for start in AgentState:
        seen, todo = {start}, [start]
        while todo:
            for nxt in TRANSITIONS[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert S.IDLE in seen, start


@pytest.mark.parametrize(
    ("current", "new"),
    [
        # Nothing becomes bootable without passing the interlock.
        (S.VERIFIED, S.INSTALLING),
        (S.DOWNLOADING, S.INSTALLING),
        (S.CHECKING, S.VERIFIED),
        # A commit needs a verified boot first.
        (S.REBOOTING, S.COMMITTED),
        (S.INSTALLING, S.COMMITTED),
        (S.IDLE, S.COMMITTED),
        # A result is always reported.
        (S.COMMITTED, S.IDLE),
        (S.ROLLING_BACK, S.IDLE),
    ],
)
def test_shortcuts_around_the_safety_steps_are_illegal(
    current: AgentState, new: AgentState
) -> None:
    with pytest.raises(IllegalTransitionError):
        check_transition(current, new)


def test_state_is_persisted_and_reloaded(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert store.load() == StateRecord()
    update = PendingUpdate("p/1.0.0/firmware.img", "1.0.0", 3, 10, {"sha256": "ab"}, "u", "b")
    record = store.transition(StateRecord(state=S.CHECKING), S.DOWNLOADING, update=update)
    assert store.load() == record
    assert list(tmp_path.glob(".*tmp")) == []


def test_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text('{"state": "dancing"}')
    with pytest.raises(AgentError, match="corrupt"):
        StateStore(tmp_path).load()


def test_anti_rollback_counter_only_moves_up(tmp_path: Path) -> None:
    counter = CounterStore(tmp_path)
    assert counter.read() == 0
    counter.raise_to(5)
    counter.raise_to(3)
    assert counter.read() == 5


def test_slot_records_are_idempotent(tmp_path: Path) -> None:
    records = SlotRecords(tmp_path)
    image = SlotImage("1.0.0", 1, 10, "ab", "p/1.0.0/firmware.img")
    records.set("a", image)
    before = (tmp_path / "slots.json").stat().st_mtime_ns
    records.set("a", image)
    assert (tmp_path / "slots.json").stat().st_mtime_ns == before
    records.set("a", None)
    assert records.read() == {}
