"""The agent end to end over real HTTP: update, defer, roll back, report."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent_support import World, run_pump
from device_agent.agent import Agent
from device_agent.state import AgentState


def _kinds(world: World, device_id: str) -> list[str]:
    return [e["kind"] for e in world.events(device_id)]


@pytest.mark.parametrize("backend", ["file", "grub", "uboot"])
def test_update_is_installed_committed_and_reported(
    world: World, tmp_path: Path, backend: str, ci: bool
) -> None:
    tool = {"grub": "grub-editenv", "uboot": "fw_setenv"}.get(backend)
    if tool and shutil.which(tool) is None:
        if ci:
            pytest.fail(f"{tool} is missing (scripts/install-test-deps.sh installs it)")
        pytest.skip(f"{tool} is not installed")
    image = world.publish("2.0.0", 2)
    pump = world.new_pump(tmp_path / "pump", "pump-0001", backend=backend)

    assert run_pump(pump) is AgentState.IDLE

    slot, running = pump.booted_image()
    assert (slot, running) == ("b", image.read_bytes())
    agent = Agent(pump.config())
    assert agent.counter.read() == 2
    env = agent.boot.read()
    assert (env.committed, env.trial) == ("b", None)
    device = world.device("pump-0001")
    assert device["version"] == "2.0.0"
    assert device["status"]["last_update"]["result"] == "committed"
    kinds = _kinds(world, "pump-0001")
    for kind in ("download-start", "verified", "install", "reboot", "self-test-pass", "committed"):
        assert kind in kinds
    assert kinds.index("install") < kinds.index("reboot") < kinds.index("committed")


def test_up_to_date_pump_downloads_nothing(world: World, tmp_path: Path) -> None:
    pump = world.new_pump(tmp_path / "pump", "pump-0001")
    assert run_pump(pump) is AgentState.IDLE
    assert pump.config().slots["b"].read_bytes() == b""
    assert "download-start" not in _kinds(world, "pump-0001")


def test_update_assigned_mid_infusion_is_downloaded_but_installed_only_after(
    world: World, tmp_path: Path
) -> None:
    image = world.publish("2.0.0", 2)
    pump = world.new_pump(tmp_path / "pump", "pump-0001")
    pump.set_status("running")

    assert run_pump(pump, max_steps=20) is AgentState.WAITING
    config = pump.config()
    assert config.slots["b"].read_bytes() == image.read_bytes()  # downloaded
    assert pump.booted_image()[0] == "a"  # not installed
    assert Agent(config).boot.read().trial is None
    assert Agent(config).store.load().deferred == "infusion-running"

    pump.set_status("idle")
    assert run_pump(pump) is AgentState.IDLE
    assert pump.booted_image() == ("b", image.read_bytes())
    deferred = [e for e in world.events("pump-0001") if e["kind"] == "deferred"]
    assert deferred[0]["detail"]["reason"] == "infusion-running"


@pytest.mark.parametrize(
    ("status", "window", "reason"),
    [
        ({"therapy": "idle", "on_mains": False, "battery_percent": 10}, None, "battery-low"),
        ({"therapy": "programmed"}, None, "infusion-programmed"),
        ({}, "03:00-03:01", "outside-maintenance-window"),
    ],
)
def test_unsafe_conditions_defer_installing(
    world: World, tmp_path: Path, status: dict[str, object], window: str | None, reason: str
) -> None:
    world.publish("2.0.0", 2)
    options = {"maintenance_window": window} if window else {}
    pump = world.new_pump(tmp_path / "pump", "pump-0001", **options)
    pump.set_status(**status)  # type: ignore[arg-type]
    if window:
        # Pin the pump's local clock outside the window.
        from datetime import datetime

        config = pump.config()
        pump.power_on()
        agent = Agent(config, clock=lambda: datetime(2026, 11, 25, 12, 0).astimezone())
        assert agent.run_cycle(max_steps=20, sleep=lambda s: None) is AgentState.WAITING
    else:
        assert run_pump(pump, max_steps=20) is AgentState.WAITING
    agent = Agent(pump.config())
    assert agent.store.load().deferred == reason
    assert agent.boot.read().trial is None
    assert pump.booted_image()[0] == "a"
