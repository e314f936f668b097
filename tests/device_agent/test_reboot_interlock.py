"""Every reboot and commit waits for a safe window, and waiting is never a failure.

The agent reboots in three places: after installing, when it resumes a reboot
that did not happen (the agent stopped first, or the reboot command failed),
and when it rolls back. Each must wait while an infusion runs or is programmed
or the pump's status is unknown (threat MED-INFUSION), and the waiting must not
count against the loop limits that turn a crashing image into a rollback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_support import World
from device_agent.agent import Agent, RebootRequested
from device_agent.simulator import SimulatedPump
from device_agent.state import AgentState

# More steps than max_state_repeats (3) by far: waiting must never trip it.
_WAIT_STEPS = 12


def _install_and_request_reboot(world: World, tmp_path: Path, **publish: str) -> SimulatedPump:
    """Publish 2.0.0, run the pump up to the reboot the install asks for."""
    world.publish("2.0.0", 2, **publish)
    pump = world.new_pump(tmp_path / "pump", "pump-0001")
    pump.power_on()
    with pytest.raises(RebootRequested):
        Agent(pump.config()).run_cycle(max_steps=50, sleep=lambda s: None)
    assert Agent(pump.config()).store.load().state is AgentState.VERIFYING_BOOT
    return pump


def _make_unsafe(pump: SimulatedPump, condition: str) -> None:
    if condition == "status-unavailable":
        pump.config().safety.status_path.unlink()
    else:
        pump.set_status(condition)


def _step_without_reboot(agent: Agent, steps: int) -> None:
    for _ in range(steps):
        try:
            agent.step()
        except RebootRequested:
            status = agent.safety()
            pytest.fail(f"rebooted while not safe ({status.reason})")


@pytest.mark.parametrize("condition", ["running", "programmed", "status-unavailable"])
def test_waiting_to_commit_during_an_infusion_is_not_a_crash_loop(
    world: World, tmp_path: Path, condition: str
) -> None:
    pump = _install_and_request_reboot(world, tmp_path)
    assert pump.power_on() == "b"  # the trial boot of the new image
    _make_unsafe(pump, condition)
    agent = Agent(pump.config())

    _step_without_reboot(agent, _WAIT_STEPS)

    record = agent.store.load()
    assert record.state is AgentState.VERIFYING_BOOT
    assert record.update is not None and record.update.selftest_passed
    assert record.outcome is None
    assert agent.boot.read().trial == "b"  # still a trial: nothing committed during therapy
    assert agent.counter.read() == 1

    pump.set_status("idle")
    assert agent.run_cycle(max_steps=50, sleep=lambda s: None) is AgentState.IDLE
    env = agent.boot.read()
    assert (env.committed, env.trial) == ("b", None)
    assert agent.counter.read() == 2
    assert world.device("pump-0001")["status"]["last_update"]["result"] == "committed"


@pytest.mark.parametrize("condition", ["running", "programmed", "status-unavailable"])
def test_resumed_reboot_waits_for_a_safe_window(
    world: World, tmp_path: Path, condition: str
) -> None:
    pump = _install_and_request_reboot(world, tmp_path)
    # The pump did not reboot (the agent was stopped right after persisting
    # verifying-boot); meanwhile an infusion started.
    _make_unsafe(pump, condition)
    agent = Agent(pump.config())

    _step_without_reboot(agent, _WAIT_STEPS)

    assert agent.store.load().state is AgentState.VERIFYING_BOOT
    assert pump.booted_image()[0] == "a"
    pump.set_status("idle")
    with pytest.raises(RebootRequested):
        agent.step()
    assert pump.power_on() == "b"


def test_bootloader_that_ignores_the_trial_is_not_rebooted_forever(
    world: World, tmp_path: Path
) -> None:
    pump = _install_and_request_reboot(world, tmp_path)
    config = pump.config()
    assert config.boot.booted_slot_file is not None
    reboots = 0
    for _ in range(20):
        # A bootloader that ignores the trial variables starts slot a every time.
        config.boot.booted_slot_file.write_text("a")
        try:
            state = Agent(config).run_cycle(max_steps=50, sleep=lambda s: None)
            break
        except RebootRequested:
            reboots += 1
    else:
        pytest.fail("the agent kept rebooting a pump whose bootloader ignores the trial")

    assert state is AgentState.IDLE
    assert reboots == config.max_state_repeats
    agent = Agent(config)
    env = agent.boot.read()
    assert (env.committed, env.trial) == ("a", None)
    assert agent.counter.read() == 1
    last = world.device("pump-0001")["status"]["last_update"]
    assert last["result"] == "rolled-back"
    assert last["error"].startswith("boot-not-taken")


@pytest.mark.parametrize("condition", ["running", "programmed", "status-unavailable"])
def test_rollback_reboot_waits_for_a_safe_window(
    world: World, tmp_path: Path, condition: str
) -> None:
    pump = _install_and_request_reboot(world, tmp_path, behaviour="selftest-fail")
    assert pump.power_on() == "b"
    _make_unsafe(pump, condition)
    agent = Agent(pump.config())

    _step_without_reboot(agent, _WAIT_STEPS)

    assert agent.store.load().state is AgentState.ROLLING_BACK
    # The trial is already cancelled: a power loss now boots the committed slot.
    env = agent.boot.read()
    assert (env.committed, env.trial) == ("a", None)
    assert pump.booted_image()[0] == "b"
    pump.set_status("idle")
    with pytest.raises(RebootRequested):
        agent.step()
    assert pump.power_on() == "a"
    assert Agent(pump.config()).run_cycle(max_steps=50, sleep=lambda s: None) is AgentState.IDLE
    last = world.device("pump-0001")["status"]["last_update"]
    assert last["result"] == "rolled-back"
    assert last["error"].startswith("self-test-failed")


def test_bootloader_that_ignores_the_rollback_is_reported_not_rebooted_forever(
    world: World, tmp_path: Path
) -> None:
    pump = _install_and_request_reboot(world, tmp_path, behaviour="selftest-fail")
    assert pump.power_on() == "b"
    config = pump.config()
    assert config.boot.booted_slot_file is not None
    reboots = 0
    for _ in range(20):
        try:
            state = Agent(config).run_cycle(max_steps=50, sleep=lambda s: None)
            break
        except RebootRequested:
            reboots += 1
            # A bootloader that ignores the cancelled trial starts slot b again.
            config.boot.booted_slot_file.write_text("b")
    else:
        pytest.fail("the agent kept rebooting a pump whose bootloader ignores the rollback")

    assert state is AgentState.IDLE
    assert reboots == config.max_state_repeats
    agent = Agent(config)
    assert agent.boot.read().committed == "a"
    assert agent.counter.read() == 1
    assert agent.store.load().failed_targets  # not tried again
    last = world.device("pump-0001")["status"]["last_update"]
    assert last["result"] == "failed"
    assert last["error"].startswith("rollback-not-taken")
