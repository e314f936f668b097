"""The one transition table and the durable state record."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from device_agent.errors import AgentError
from device_agent.state import (
    TRANSITIONS,
    AgentState,
    CounterStore,
    IllegalTransitionError,
    PendingUpdate,
    ResumePoint,
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


UPDATE = PendingUpdate(
    "p/2.0.0/firmware.img", "2.0.0", 2, 1000, {"sha256": "ab", "sha512": "cd"}, "u", "b", 400
)


def test_a_state_file_written_before_resume_points_still_loads(tmp_path: Path) -> None:
    update: dict[str, Any] = {
        "path": UPDATE.path, "version": "2.0.0", "release_counter": 2, "length": 1000,
        "hashes": UPDATE.hashes, "url": "u", "slot": "b", "downloaded": 400,
        "selftest_passed": False,
    }  # fmt: skip
    old = {"state": "downloading", "repeats": 2, "update": update, "outcome": None,
           "deferred": None, "failed_targets": []}  # fmt: skip
    (tmp_path / "state.json").write_text(json.dumps(old))
    record = StateStore(tmp_path).load()
    assert record == StateRecord(state=S.DOWNLOADING, repeats=2, update=UPDATE)
    assert (record.resume, UPDATE.transfer_seconds, UPDATE.last_error) == (None, 0.0, None)


def test_a_resume_point_is_persisted(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    point = ResumePoint.of(UPDATE)
    assert point == ResumePoint(UPDATE.path, 1000, UPDATE.hashes, "b", 400)
    store.save(StateRecord(resume=point))
    assert store.load().resume == point


@pytest.mark.parametrize(
    ("changes", "fits"),
    [
        ({}, True),
        ({"url": "https://another-mirror/fw.img"}, True),  # the same bytes elsewhere
        ({"path": "p/2.0.1/firmware.img"}, False),
        ({"length": 1001}, False),
        ({"hashes": {"sha256": "ab"}}, False),  # fewer hashes: not the same target
        ({"hashes": {"sha256": "ab", "sha512": "ce"}}, False),
        ({"hashes": {}}, False),
        ({"slot": "a"}, False),  # the committed slot changed since
    ],
    ids=["same", "other-mirror", "other-path", "other-length", "fewer-hashes",
         "other-hash", "no-hashes", "other-slot"],
)  # fmt: skip
def test_kept_bytes_fit_only_the_same_target_in_the_same_slot(
    changes: dict[str, Any], fits: bool
) -> None:
    point = ResumePoint.of(UPDATE)
    assert point is not None
    assert point.fits(replace(UPDATE, downloaded=0, **changes)) is fits


@pytest.mark.parametrize("downloaded", [0, 1000], ids=["nothing-durable", "complete"])
def test_nothing_to_resume_makes_no_resume_point(downloaded: int) -> None:
    assert ResumePoint.of(replace(UPDATE, downloaded=downloaded)) is None
