"""The simulated pump keeps to the production bounds of the agent's configuration."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from device_agent.config import MAX_STATUS_AGE
from device_agent.simulator import SimulatedPump
from device_agent.status import FileStatusProvider


def _pump(directory: Path) -> SimulatedPump:
    return SimulatedPump.create(
        directory,
        server_url="http://127.0.0.1:9",
        root=b"{}",
        device_id="pump-0001",
        product="sigma-spectrum",
        hardware_id="rev-b",
        key_pem=b"not used here",
    )


def _backdate(pump: SimulatedPump, therapy: str, age: timedelta) -> None:
    at = (datetime.now(UTC) - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc = {"therapy": therapy, "on_mains": False, "battery_percent": 55, "updated_at": at}
    pump.config().safety.status_path.write_text(json.dumps(doc))


def test_the_simulator_config_keeps_a_status_only_minutes_fresh(tmp_path: Path) -> None:
    """A day-old 'idle' must never count as safe, not even on the simulator."""
    assert _pump(tmp_path / "pump").config().safety.max_status_age <= MAX_STATUS_AGE <= 300


@pytest.mark.parametrize("therapy", ["idle", "running"])
def test_the_simulated_therapy_controller_republishes_its_status_at_power_on(
    tmp_path: Path, therapy: str
) -> None:
    pump = _pump(tmp_path / "pump")
    _backdate(pump, therapy, timedelta(hours=2))
    pump.power_on()
    config = pump.config()
    status = FileStatusProvider(config.safety.status_path).read()
    # The same state, published again: fresh, never turned into another one.
    assert (status.therapy, status.on_mains, status.battery_percent) == (therapy, False, 55)
    assert datetime.now(UTC) - status.updated_at < timedelta(seconds=config.safety.max_status_age)
    # A status that is gone stays gone: the agent must see it as unavailable.
    config.safety.status_path.unlink()
    pump.power_on()
    assert not config.safety.status_path.exists()
