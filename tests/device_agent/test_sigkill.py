"""SIGKILL the real agent process at random moments during real updates.

``pumpguard agent simulate run`` is the agent as a pump runs it (its reboots
re-execute the process). Killing it with SIGKILL is a power loss as far as the
agent is concerned (no cleanup code runs); starting it again powers the pump
on through the simulated bootloader. Whatever moment the kill lands on, the
pump must boot a complete verified image and finish the update correctly.

Killed again and again mid-download, more often than ``max_state_repeats``,
the agent must still finish, each attempt resuming where the previous one had
checkpointed (progress counts as progress, issue 19 finding 5).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_support import World, set_selftest
from device_agent.agent import Agent
from device_agent.simulator import SimulatedPump
from device_agent.state import StateStore
from mirror_support import mirror, use_mirror

KILLS = 8


def _run(pump: SimulatedPump) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pumpguard", "agent", "simulate", "run", "--dir", str(pump.dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _timed_run(pump: SimulatedPump) -> float:
    start = time.monotonic()
    proc = _run(pump)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    return time.monotonic() - start


@pytest.mark.parametrize(
    ("behaviour", "selftest"),
    [("ok", "/bin/true"), ("selftest-fail", "/bin/false")],
    ids=["good-image", "failing-image"],
)
def test_sigkill_at_random_moments_never_bricks_the_pump(
    world: World,
    tmp_path: Path,
    behaviour: str,
    selftest: str,
) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    new = world.publish("2.0.0", 2, behaviour=behaviour, size=8 * 1024 * 1024).read_bytes()
    # Measure how long an uninterrupted update takes on this machine (one
    # `simulate run` does all of it: the reboot re-executes the process)...
    probe = world.new_pump(tmp_path / "probe", "pump-probe")
    set_selftest(probe, [selftest])
    span = _timed_run(probe)
    # ...then kill a fresh pump at random moments within that span (once the
    # update has finished, later runs are short and the kill may miss).
    pump = world.new_pump(tmp_path / "pump", "pump-0001")
    set_selftest(pump, [selftest])
    factory = pump.config().slots["a"].read_bytes()
    kills = 0
    for _ in range(KILLS):
        proc = _run(pump)
        time.sleep(rng.uniform(0.02, 0.8 * span))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        slot = pump.power_on()
        image = pump.config().slots[slot].read_bytes()
        assert image in (factory, new), f"seed {seed}: boots an unverified image in {slot}"
    # Power on for good and let it finish.
    for _ in range(3):
        _timed_run(pump)
    agent = Agent(pump.config())
    env = agent.boot.read()
    committed = pump.config().slots[env.committed].read_bytes()
    outcome = agent.store.load().outcome
    assert env.trial is None, f"seed {seed}"
    assert outcome is not None, f"seed {seed}"
    if behaviour == "selftest-fail":
        assert committed == factory, f"seed {seed}: a failing image was committed"
    if committed == new:
        assert (agent.counter.read(), outcome.result) == (2, "committed"), f"seed {seed}"
        assert world.device("pump-0001")["version"] == "2.0.0", f"seed {seed}"
    else:
        # Power cuts during the new image's boot trial or self-test count as
        # that image failing (bootloader attempts or the agent's loop
        # counter): rolling back is correct then, whatever the image.
        assert committed == factory, f"seed {seed}"
        assert agent.counter.read() == 1, f"seed {seed}"
        assert outcome.result == "rolled-back", f"seed {seed}"
        if behaviour == "ok":
            assert outcome.reason in ("crash-loop", "boot-attempts-exhausted"), f"seed {seed}"
        assert world.device("pump-0001")["version"] == "1.0.0", f"seed {seed}"
    assert kills >= 1, f"seed {seed}: no kill landed"


MID_DOWNLOAD_KILLS = 5  # more than max_state_repeats (3)
SLOW_SIZE = 640 * 1024
SLOW_RATE = 128 * 1024  # bytes/s: about 0.5 s of transfer between two kills


def _downloaded(store: StateStore) -> int:
    update = store.load().update
    return update.downloaded if update else 0


def test_killed_five_times_mid_download_the_agent_resumes_each_time_and_finishes(
    world: World, tmp_path: Path
) -> None:
    """Each kill lands mid-body, after a checkpoint; the next attempt's Range starts there."""
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    image = world.publish("2.0.0", 2, size=SLOW_SIZE).read_bytes()
    pump = world.new_pump(tmp_path / "pump", "pump-0001")
    set_selftest(pump, ["/bin/true"])
    factory = pump.config().slots["a"].read_bytes()
    store = StateStore(pump.config().state_dir)
    with mirror(world.server_repo / "targets") as cdn:
        # Checkpoints every 0.25 s of download (and at least 64 KiB apart).
        use_mirror(pump, cdn, agent="checkpoint_interval = 0.25\n")
        cdn.rate = SLOW_RATE
        seen: list[int] = []  # checkpoint observed before each kill
        kept: list[int] = []  # checkpoint persisted when the kill landed
        for kill in range(MID_DOWNLOAD_KILLS):
            floor = kept[-1] if kept else 0
            proc = _run(pump)
            deadline = time.monotonic() + 60
            while (now := _downloaded(store)) <= floor:
                assert proc.poll() is None, f"seed {seed}: the agent exited before kill {kill}"
                assert time.monotonic() < deadline, f"seed {seed}: no checkpoint after {floor}"
                time.sleep(0.005)
            seen.append(now)
            time.sleep(rng.uniform(0, 0.15))  # somewhere between two checkpoints
            body = cdn.served[-1]
            assert not body.done and body.start + body.sent < SLOW_SIZE, (
                f"seed {seed}: kill {kill} would not land mid-transfer"
            )
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
            kept.append(_downloaded(store))
            # The power loss left the factory image bootable, nothing else.
            slot = pump.power_on()
            assert (slot, pump.config().slots[slot].read_bytes()) == ("a", factory)
        cdn.rate = None
        _timed_run(pump)
    starts = cdn.starts
    # One request per attempt: the first from byte 0, each resume exactly at
    # the checkpoint the killed attempt had made durable, which grew each time.
    assert len(starts) == MID_DOWNLOAD_KILLS + 1, f"seed {seed}: {starts}"
    assert starts == [0, *kept], f"seed {seed}: starts {starts}, checkpoints {kept}"
    assert all(k >= s for k, s in zip(kept, seen, strict=True)), f"seed {seed}"
    assert kept == sorted(set(kept)) and kept[0] > 0, f"seed {seed}: {kept}"
    assert pump.booted_image() == ("b", image), f"seed {seed}"
    agent = Agent(pump.config())
    outcome = agent.store.load().outcome
    assert outcome is not None and outcome.result == "committed", f"seed {seed}: {outcome}"
    assert agent.counter.read() == 2
    assert world.device("pump-0001")["version"] == "2.0.0"
