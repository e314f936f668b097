"""Reports survive an unreachable server; polling backs off with jitter."""

from __future__ import annotations

import math
import random
import socket
from pathlib import Path

import pytest

from agent_support import World
from device_agent.agent import Agent
from device_agent.errors import TransferError
from device_agent.httpclient import AgentHttp
from device_agent.reporting import Outbox, ServerClient, backoff_delay, load_device_key
from device_agent.state import AgentState
from repo_support import PRODUCT


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
    http = AgentHttp()
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
    client = ServerClient(world.base_url, "pump-0001", load_device_key(config.key), AgentHttp(), 5)
    outbox.flush(client)
    outbox.append("check", {"path": "x"})
    assert outbox.flush(client) == 1
    assert [e["kind"] for e in world.events("pump-0001")] == ["check"]


def test_unenrolled_pump_keeps_its_events(world: World, tmp_path: Path) -> None:
    pump = world.new_pump(tmp_path / "pump", "pump-0009", enroll=False)
    config = pump.config()
    outbox = Outbox(config.state_dir)
    outbox.append("check", {})
    client = ServerClient(world.base_url, "pump-0009", load_device_key(config.key), AgentHttp(), 5)
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


def _checkin(agent: Agent) -> float:
    """One check-in of ``agent``; the poll interval the server asked for."""
    return agent.client.checkin(agent.report()).poll_interval


@pytest.mark.parametrize(
    "interval",
    [math.nan, math.inf, -math.inf, "60", True],
    ids=["nan", "inf", "-inf", "string", "true"],
)
def test_a_poll_interval_that_is_not_a_finite_number_is_a_malformed_answer(
    world: World, tmp_path: Path, interval: object
) -> None:
    # A compromised server answering NaN would otherwise make every wait
    # return at once: a tight poll loop writing state to flash each time.
    agent = Agent(world.new_pump(tmp_path / "pump", "pump-0001").config())
    world.liar.fields = {"poll_interval": interval}
    with pytest.raises(TransferError, match="check-in answer is malformed"):
        _checkin(agent)
    assert agent.run_cycle(sleep=lambda s: None) is AgentState.IDLE
    delays = [agent.next_poll_delay() for _ in range(200)]
    assert all(math.isfinite(d) and d >= 1 for d in delays), delays


@pytest.mark.parametrize(
    ("interval", "expected"),
    [(120, 120.0), (2.5, 2.5), (0.01, 1.0), (-5, 1.0), (10**6, 86400.0), (10**400, 86400.0)],
    ids=["120", "2.5", "0.01", "-5", "1e6", "huge-int"],
)
def test_the_servers_poll_interval_is_kept_within_bounds(
    world: World, tmp_path: Path, interval: float, expected: float
) -> None:
    agent = Agent(world.new_pump(tmp_path / "pump", "pump-0001").config())
    world.liar.fields = {"poll_interval": interval}
    assert _checkin(agent) == expected


def test_an_infinite_release_counter_is_a_malformed_answer(world: World, tmp_path: Path) -> None:
    agent = Agent(world.new_pump(tmp_path / "pump", "pump-0001").config())
    world.lie(PRODUCT, "2.0.0", 2)
    assert world.liar.assigned is not None
    world.liar.fields = {"assigned": {**world.liar.assigned, "release_counter": math.inf}}
    with pytest.raises(TransferError, match="check-in answer is malformed"):
        _checkin(agent)
    assert agent.run_cycle(sleep=lambda s: None) is AgentState.IDLE  # not a crash
