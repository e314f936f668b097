"""A new image that fails returns the pump to its committed slot, reported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent_support import World, run_pump, set_selftest
from device_agent.agent import Agent
from device_agent.simulator import SimulatedPump
from device_agent.state import AgentState


def _assert_rolled_back(world: World, pump: SimulatedPump, reason: str) -> None:
    factory = pump.config().slots["a"].read_bytes()
    assert pump.booted_image() == ("a", factory)
    agent = Agent(pump.config())
    env = agent.boot.read()
    assert (env.committed, env.trial) == ("a", None)
    assert agent.counter.read() == 1  # unchanged: nothing was committed
    device = world.device(pump.config().device_id)
    assert device["version"] == "1.0.0"
    last = device["status"]["last_update"]
    assert last["result"] == "rolled-back"
    assert last["version"] == "2.0.0"
    assert last["error"].startswith(reason)
    rolled = [e for e in world.events(pump.config().device_id) if e["kind"] == "rolled-back"]
    assert rolled and rolled[-1]["detail"]["reason"] == reason


def test_self_test_failure_rolls_back_and_is_not_retried(world: World, tmp_path: Path) -> None:
    world.publish("2.0.0", 2, behaviour="selftest-fail")
    pump = world.new_pump(tmp_path / "pump", "pump-0001")

    assert run_pump(pump) is AgentState.IDLE

    _assert_rolled_back(world, pump, "self-test-failed")
    kinds = [e["kind"] for e in world.events("pump-0001")]
    assert "self-test-fail" in kinds
    # The server still assigns 2.0.0; the pump does not try it again.
    assert run_pump(pump) is AgentState.IDLE
    assert kinds.count("download-start") == 1
    assert [e["kind"] for e in world.events("pump-0001")].count("download-start") == 1


def test_image_that_never_boots_falls_back_when_attempts_run_out(
    world: World, tmp_path: Path
) -> None:
    world.publish("2.0.0", 2, behaviour="crash")
    pump = world.new_pump(tmp_path / "pump", "pump-0001")

    assert run_pump(pump) is AgentState.IDLE

    _assert_rolled_back(world, pump, "boot-attempts-exhausted")


def test_crash_loop_while_verifying_the_boot_rolls_back(world: World, tmp_path: Path) -> None:
    """The new image boots, but the pump dies during every self-test."""
    world.publish("2.0.0", 2)
    pump = world.new_pump(tmp_path / "pump", "pump-0001")
    # More boot attempts than the agent's loop limit, so the agent's own
    # loop counter (not the bootloader) must catch the crash loop.
    config = pump.config_path.read_text().replace("attempts = 3", "attempts = 8")
    pump.config_path.write_text(config)
    # The self-test kills the agent process, like a watchdog reset would.
    set_selftest(pump, ["/bin/sh", "-c", "kill -9 $PPID"])

    codes = []
    for _ in range(8):
        done = subprocess.run(
            [sys.executable, "-m", "pumpguard", "agent", "simulate", "run", "--dir", str(pump.dir)],
            capture_output=True,
            timeout=120,
            check=False,
        )
        codes.append(done.returncode)
        if done.returncode == 0:
            break
    assert codes[-1] == 0, done.stderr.decode()
    assert codes.count(-9) == 3  # killed in self-test max_state_repeats times
    _assert_rolled_back(world, pump, "crash-loop")
