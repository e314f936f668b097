"""Interrupted downloads: progress counts as progress, and giving up keeps the bytes.

The agent runs against the real update server on loopback (check-ins, TUF
metadata) and takes the firmware from a scripted mirror
(:mod:`mirror_support`), which answers each firmware request as the test
says: the whole rest, a connection dropped after some bytes, an HTTP error, a
flipped byte, or the rest while the test cuts the agent's power. The Range
header of every request shows where each attempt resumed.

The give-up rule under test (``device_agent.agent``, threat AGT-SLOW): only
attempts in a row that made no progress (no checkpoint advanced) count
towards ``max_state_repeats`` (3 here); a round of downloading is also bounded
by the firmware's deadline; giving up keeps the checkpointed bytes, and the
next round of the same target resumes from them. Bytes whose final hash is
wrong are discarded and count as a failure (threat AGT-TAMPER).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_agent_config import GOOD

from agent_support import World
from device_agent.agent import Agent
from device_agent.config import load_config
from device_agent.download import CHECKPOINT_SECONDS, MIN_CHECKPOINT_BYTES
from device_agent.errors import AgentConfigError
from device_agent.simulator import SimulatedPump
from device_agent.state import AgentState, ResumePoint, StateRecord
from mirror_support import (
    FLIPPED,
    FULL,
    KILL,
    Cut,
    Mirror,
    Plan,
    Served,
    Status,
    edit_config,
    mirror,
    use_mirror,
)

S = AgentState
SIZE = 640 * 1024
#: What a dropped connection delivers: more than a checkpoint's minimum.
CUT = 96 * 1024
#: A few bytes per connection: less than a checkpoint's minimum.
TINY = 1000
#: An in-process power cut lands this far into a KILL attempt (no checkpoint yet).
KILL_AFTER = 16 * 1024
assert TINY < KILL_AFTER < MIN_CHECKPOINT_BYTES < CUT


class PowerCut(BaseException):
    """The pump lost power (no code path of the agent may swallow it)."""


@dataclass
class Rig:
    world: World
    pump: SimulatedPump
    mirror: Mirror
    image: bytes


@pytest.fixture
def rig(world: World, tmp_path: Path) -> Iterator[Rig]:
    image = world.publish("2.0.0", 2, size=SIZE).read_bytes()
    pump = world.new_pump(tmp_path / "pump", "pump-0001")
    with mirror(world.server_repo / "targets") as m:
        use_mirror(pump, m)
        yield Rig(world, pump, m, image)


@dataclass
class Round:
    """How one round of downloading ended, and the firmware requests it made."""

    record: StateRecord
    served: list[Served]

    @property
    def starts(self) -> list[int]:
        return [s.start for s in self.served]


def _round(rig: Rig) -> Round:
    """Run the agent in-process from where it rests until a download round ends.

    A round ends when the agent leaves ``downloading``: to ``verified`` (the
    image is complete and its hashes match) or to ``reporting`` (given up or
    refused). A :data:`KILL` request cuts the power :data:`KILL_AFTER` bytes
    into its body; the pump is powered on again and a new agent started.
    """
    m = rig.mirror
    first = len(m.served)
    killed: set[int] = set()

    def cut_power(done: int, total: int) -> None:
        current = m.served[-1] if len(m.served) > first else None
        if current is None or current.plan is not KILL or id(current) in killed:
            return
        if done >= current.start + KILL_AFTER:
            killed.add(id(current))
            raise PowerCut

    rig.pump.power_on()
    agent = Agent(rig.pump.config(), progress=cut_power)
    downloading = False
    for _ in range(300):
        record = agent.store.load()
        if downloading and record.state is not S.DOWNLOADING:
            return Round(record, m.served[first:])
        downloading = downloading or record.state is S.DOWNLOADING
        try:
            agent.step()
        except PowerCut:
            rig.pump.power_on()
            agent = Agent(rig.pump.config(), progress=cut_power)
    raise AssertionError("the download neither finished nor was given up")


def _resumes(plan: list[Plan]) -> list[int]:
    """Where each attempt must start: a cut's bytes are checkpointed, nothing else moves it."""
    starts, at = [], 0
    for step in [*plan, FULL]:
        starts.append(at)
        if isinstance(step, Cut) and step.after >= MIN_CHECKPOINT_BYTES:
            at += step.after
    return starts


def _assert_slot_holds(rig: Rig, image: bytes) -> None:
    config = rig.pump.config()
    assert config.slots["b"].read_bytes() == image
    assert Agent(config).slot_records.read()["b"].length == len(image)


E503 = Status(503)
DROP, FEW = Cut(CUT), Cut(TINY)

# (attempt outcomes, None: the download finishes | (reason, attempts made) it gives up after)
GIVE_UP_RULE = [
    pytest.param([], None, id="no-interruption"),
    pytest.param([DROP] * 5, None, id="five-drops-with-progress-never-give-up"),
    pytest.param([E503, E503, DROP] * 3, None, id="progress-resets-the-count"),
    pytest.param([DROP, KILL, KILL, DROP, KILL, KILL], None, id="kills-between-progress"),
    pytest.param([E503] * 4, ("http-503", 3), id="three-without-progress-give-up"),
    pytest.param([KILL] * 4, ("loop", 3), id="three-kills-before-a-checkpoint-give-up"),
    pytest.param([DROP] + [FEW] * 4, ("network", 4), id="a-few-bytes-per-connection-no-progress"),
]  # fmt: skip


@pytest.mark.parametrize(("plan", "gives_up"), GIVE_UP_RULE)
def test_give_up_rule_counts_only_attempts_without_progress(
    rig: Rig, plan: list[Plan], gives_up: tuple[str, int] | None
) -> None:
    rig.mirror.plan = list(plan)
    first = _round(rig)
    expected = _resumes(plan)
    if gives_up is None:
        assert first.record.state is S.VERIFIED, first.record.outcome
        assert first.starts == expected
        _assert_slot_holds(rig, rig.image)
        return
    reason, attempts = gives_up
    assert first.record.state is S.REPORTING
    assert first.record.outcome is not None
    assert (first.record.outcome.result, first.record.outcome.reason) == ("failed", reason)
    assert first.starts == expected[:attempts]
    # Giving up kept what was durable; the next round of the same target
    # resumes there (or starts afresh if nothing was) and completes.
    kept = expected[attempts]
    resume = first.record.resume
    assert (resume.downloaded if resume else 0) == kept
    rig.mirror.plan.clear()
    second = _round(rig)
    assert second.record.state is S.VERIFIED, second.record.outcome
    assert second.starts == [kept]
    _assert_slot_holds(rig, rig.image)


def test_a_round_of_downloading_is_bounded_by_the_firmware_deadline_then_resumed(
    rig: Rig,
) -> None:
    """A server handing out a little per connection, slowly, cannot hold the pump (AGT-SLOW).

    Every attempt makes progress, so the no-progress count never ends the
    round: the firmware's deadline (metadata_deadline + length /
    min_firmware_rate, here 1.5 s) over all attempts does, and the next
    round resumes from the checkpoint.
    """
    edit_config(
        rig.pump,
        {"metadata_deadline = 30": "metadata_deadline = 1.5\nmin_firmware_rate = 1099511627776"},
    )
    rig.mirror.rate = 200 * 1024  # a cut of 96 KiB takes about 0.5 s
    rig.mirror.plan = [DROP] * 8
    first = _round(rig)
    assert first.record.state is S.REPORTING
    assert first.record.outcome is not None
    assert first.record.outcome.reason == "slow-retrieval"
    assert "giving up for now" in (first.record.outcome.error or "")
    made = len(first.served)
    assert 2 <= made <= 4, first.starts  # about 1.5 s of 0.5 s attempts, not all 8
    assert first.starts == _resumes([DROP] * made)[:made]
    resume = first.record.resume
    assert resume is not None and resume.downloaded == made * CUT
    rig.mirror.plan.clear()
    rig.mirror.rate = None
    second = _round(rig)
    assert second.record.state is S.VERIFIED
    assert second.starts == [made * CUT]
    _assert_slot_holds(rig, rig.image)


def test_a_resumed_image_with_a_wrong_hash_is_discarded_and_counts_as_a_failure(
    rig: Rig,
) -> None:
    # Round 1: progress, then three attempts without: given up, bytes kept.
    rig.mirror.plan = [DROP, E503, E503, E503]
    first = _round(rig)
    assert first.record.resume is not None and first.record.resume.downloaded == CUT
    # Round 2 resumes, but the rest is not the signed bytes: refused, and the
    # bytes are not kept for another round.
    rig.mirror.plan = [FLIPPED]
    second = _round(rig)
    assert second.starts == [CUT]
    assert second.record.state is S.REPORTING
    assert second.record.outcome is not None
    assert (second.record.outcome.result, second.record.outcome.reason) == (
        "failed",
        "hash-mismatch",
    )
    assert second.record.resume is None
    assert "b" not in Agent(rig.pump.config()).slot_records.read()
    # Round 3 starts from byte 0 and gets the signed image.
    third = _round(rig)
    assert third.starts == [0]
    assert third.record.state is S.VERIFIED
    _assert_slot_holds(rig, rig.image)


def test_kept_bytes_resume_only_the_same_target(rig: Rig) -> None:
    rig.mirror.plan = [DROP, E503, E503, E503]
    first = _round(rig)
    config = rig.pump.config()
    update = first.record.update
    assert update is not None
    assert first.record.resume == ResumePoint(update.path, SIZE, update.hashes, "b", CUT)
    # A newer release is assigned before the next round: its download starts
    # at byte 0 (the slot's prefix is another image's) and the old point goes.
    newer = rig.world.publish("2.1.0", 3, size=SIZE).read_bytes()
    second = _round(rig)
    assert second.starts == [0]
    assert second.served[0].path.startswith("sigma-spectrum/2.1.0/")
    assert second.record.state is S.VERIFIED
    assert second.record.resume is None
    assert config.slots["b"].read_bytes() == newer


def test_connection_dropped_five_times_mid_body_the_agent_process_resumes_and_finishes(
    rig: Rig,
) -> None:
    """The real agent process (``simulate run``) against a network that drops mid-body."""
    rig.mirror.plan = [DROP] * 5
    done = subprocess.run(
        [sys.executable, "-m", "pumpguard", "agent", "simulate", "run", "--dir", str(rig.pump.dir)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    # Each attempt resumed exactly where the previous connection dropped.
    assert rig.mirror.starts == [0, CUT, 2 * CUT, 3 * CUT, 4 * CUT, 5 * CUT]
    assert [s.sent for s in rig.mirror.served] == [CUT] * 5 + [SIZE - 5 * CUT]
    assert rig.pump.booted_image() == ("b", rig.image)
    agent = Agent(rig.pump.config())
    assert agent.counter.read() == 2
    outcome = agent.store.load().outcome
    assert outcome is not None and outcome.result == "committed"
    assert rig.world.device("pump-0001")["version"] == "2.0.0"
    errors = [e for e in rig.world.events("pump-0001") if e["kind"] == "error"]
    assert [e["detail"]["reason"] for e in errors] == ["network"] * 5


@pytest.mark.parametrize(
    ("value", "loads"),
    [
        (None, CHECKPOINT_SECONDS),
        ("0.25", 0.25),
        ("600", 600.0),
        ("0.1", None),  # an fsync and a state write ten times a second: flash wear
        ("601", None),  # a power loss on a slow link would cost too much
        ("0", None),
        ("-1", None),
        ('"5"', None),
        ("nan", None),
    ],
)
def test_checkpoint_interval_is_bounded_and_named_when_wrong(
    tmp_path: Path, value: str | None, loads: float | None
) -> None:
    path = tmp_path / "agent.toml"
    extra = "" if value is None else f"\n[agent]\ncheckpoint_interval = {value}\n"
    path.write_text(GOOD + extra)
    if loads is not None:
        assert load_config(path).checkpoint_interval == loads
        return
    with pytest.raises(AgentConfigError, match=r"\[agent\] checkpoint_interval"):
        load_config(path)
