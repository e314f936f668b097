"""Reports survive an unreachable server; polling backs off with jitter."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest
import urllib3

from agent_support import World
from device_agent.errors import TransferError
from device_agent.reporting import Outbox, ServerClient, backoff_delay, load_device_key


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_events_are_queued_while_the_server_is_down_and_delivered_in_order(
    world: World, tmp_path: Path
) -> None:
    pump = world.new_pump(tmp_path / "pump", "pump-0001")
    config = pump.config()
    key = load_device_key(config.key)
    http = urllib3.PoolManager()
    outbox = Outbox(config.state_dir)
    for i in range(3):
        outbox.append("deferred", {"reason": "infusion-running", "n": i})

    down = ServerClient(_dead_url(), "pump-0001", key, http, timeout=2)
    with pytest.raises(TransferError):
        outbox.flush(down)
    assert len(outbox.pending()) == 3  # nothing lost

    # The pump restarts (new objects, same files) and the server is back.
    outbox = Outbox(config.state_dir)
    up = ServerClient(world.base_url, "pump-0001", key, http, timeout=5)
    assert outbox.flush(up) == 3
    assert outbox.pending() == []
    stored = [e["detail"]["n"] for e in world.events("pump-0001") if e["kind"] == "deferred"]
    assert stored == [0, 1, 2]


def test_a_batch_the_server_refuses_as_malformed_does_not_block_later_ones(
    world: World, tmp_path: Path
) -> None:
    pump = world.new_pump(tmp_path / "pump", "pump-0001")
    config = pump.config()
    outbox = Outbox(config.state_dir)
    outbox.append("no-such-kind", {})
    client = ServerClient(
        world.base_url, "pump-0001", load_device_key(config.key), urllib3.PoolManager(), 5
    )
    outbox.flush(client)
    outbox.append("check", {"path": "x"})
    assert outbox.flush(client) == 1
    assert [e["kind"] for e in world.events("pump-0001")] == ["check"]


def test_unenrolled_pump_keeps_its_events(world: World, tmp_path: Path) -> None:
    pump = world.new_pump(tmp_path / "pump", "pump-0009", enroll=False)
    config = pump.config()
    outbox = Outbox(config.state_dir)
    outbox.append("check", {})
    client = ServerClient(
        world.base_url, "pump-0009", load_device_key(config.key), urllib3.PoolManager(), 5
    )
    with pytest.raises(TransferError, match="401"):
        outbox.flush(client)
    assert len(outbox.pending()) == 1


@pytest.mark.parametrize("failures", [0, 1, 3, 10, 40])
def test_backoff_grows_with_failures_and_stays_capped(failures: int) -> None:
    rng = random.Random(7)
    delays = [backoff_delay(60, failures, 3600, rng) for _ in range(200)]
    if failures == 0:
        assert all(54 <= d <= 66 for d in delays)
        return
    ceiling = min(3600, 60 * 2**failures)
    assert all(0 < d <= ceiling for d in delays)
    # Full jitter: a fleet failing together spreads out.
    assert max(delays) - min(delays) > ceiling / 3
