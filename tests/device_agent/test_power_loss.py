"""Power loss at every durable write, fsync, rename and unlink of an update.

The harness first runs an update once and records every crash point the agent
passes (:mod:`device_agent._durable` marks each one). Then, for each point N,
it takes a fresh copy of the same pump, cuts the power right before the N-th
durable operation (a ``BaseException`` no code path can swallow), powers the
pump on again through the simulated bootloader, runs the agent to rest and
checks what must hold after *any* power loss:

* right after the power loss, the pump boots a complete, verified image
  (the factory image or the new release, byte for byte), never a partial one;
* the agent resumes and finishes the same way an uninterrupted run does
  (committed for a good image, rolled back for one that fails its self-test);
* the anti-rollback counter equals the committed image's release_counter;
* the outcome reaches the server.

Both the update path (download, install, reboot, self-test, commit, report)
and the rollback path (self-test failure, cancel, reboot back, report) are
enumerated. Each enumeration is split into ``SHARDS`` cases (shard k takes
every point N with N % SHARDS == k - 1) so pytest-xdist spreads them over the
cores; together the shards take every point, which
``test_the_shards_together_take_every_crash_point`` checks.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_support import World, run_pump, set_selftest, world_at
from device_agent import _durable
from device_agent.agent import Agent
from device_agent.simulator import SimulatedPump
from device_agent.state import AgentState

SHARDS = 4
CASES = [
    pytest.param(name, shard, id=f"{name}-{shard}of{SHARDS}")
    for name in ("update", "rollback")
    for shard in range(1, SHARDS + 1)
]


def shard_points(count: int, shard: int) -> list[int]:
    """The crash points (1-based) of ``count`` that shard ``shard`` of ``SHARDS`` takes."""
    return [n for n in range(1, count + 1) if n % SHARDS == shard - 1]


class PowerLoss(BaseException):
    """The power went out."""


@dataclass
class Scenario:
    """One update flow to enumerate."""

    name: str
    template: SimulatedPump
    images: dict[bytes, int]  # complete images -> their release_counter
    expect_committed: bytes
    expect_result: str
    points: list[str]


def _fresh(template: SimulatedPump, where: Path) -> SimulatedPump:
    shutil.copytree(template.dir, where)
    pump = SimulatedPump(where)
    # The config holds absolute paths only where the template wrote them.
    text = pump.config_path.read_text().replace(str(template.dir), str(where))
    pump.config_path.write_text(text)
    return pump


def _record_points(pump: SimulatedPump) -> list[str]:
    labels: list[str] = []
    with _durable.crash_hook(labels.append):
        assert run_pump(pump) is AgentState.IDLE
    return labels


@pytest.fixture(scope="module")
def scenarios(
    key_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Scenario]]:
    tmp = tmp_path_factory.mktemp("power")
    with world_at(tmp / "world", key_dir) as world:
        out = {}
        for name, behaviour, selftest, version, counter in (
            ("update", "ok", "/bin/true", "2.0.0", 2),
            ("rollback", "selftest-fail", "/bin/false", "2.0.0", 2),
        ):
            w: World = world
            if name == "update":
                image = w.publish(version, counter, behaviour=behaviour, size=96 * 1024)
            else:
                # A second product line is not needed: the rollback pumps use
                # hardware rev-c, which only the bad build is made for.
                image = w.publish(
                    "2.0.1", 3, behaviour=behaviour, size=96 * 1024, hardware_ids=("rev-c",)
                )
            template = w.new_pump(
                tmp / f"template-{name}",
                f"pump-{name}",
                hardware_id="rev-b" if name == "update" else "rev-c",
            )
            set_selftest(template, [selftest])
            factory = template.config().slots["a"].read_bytes()
            probe = _fresh(template, tmp / f"probe-{name}")
            points = _record_points(probe)
            new = image.read_bytes()
            out[name] = Scenario(
                name=name,
                template=template,
                images={factory: 1, new: counter if name == "update" else 3},
                expect_committed=new if name == "update" else factory,
                expect_result="committed" if name == "update" else "rolled-back",
                points=points,
            )
        yield out


def test_the_update_paths_have_dozens_of_crash_points(scenarios: dict[str, Scenario]) -> None:
    for scenario in scenarios.values():
        kinds = {label.split(" ", 1)[0] for label in scenario.points}
        assert {"write", "fsync", "rename", "fsync-dir"} <= kinds, scenario.name
        assert len(scenario.points) >= 24, (scenario.name, len(scenario.points))
        print(f"{scenario.name}: {len(scenario.points)} crash points")


def _crash_at(n: int) -> Callable[[str], None]:
    seen = [0]

    def hook(label: str) -> None:
        seen[0] += 1
        if seen[0] == n:
            raise PowerLoss(label)

    return hook


def test_the_shards_together_take_every_crash_point(scenarios: dict[str, Scenario]) -> None:
    for scenario in scenarios.values():
        count = len(scenario.points)
        taken = [n for shard in range(1, SHARDS + 1) for n in shard_points(count, shard)]
        assert sorted(taken) == list(range(1, count + 1)), scenario.name
        assert all(shard_points(count, shard) for shard in range(1, SHARDS + 1))


@pytest.mark.parametrize(("name", "shard"), CASES)
def test_power_loss_at_every_durable_operation(
    scenarios: dict[str, Scenario], name: str, shard: int, tmp_path: Path
) -> None:
    scenario = scenarios[name]
    failures = []
    for n in shard_points(len(scenario.points), shard):
        pump = _fresh(scenario.template, tmp_path / f"crash-{n}")
        hook = _crash_at(n)
        with _durable.crash_hook(hook), contextlib.suppress(PowerLoss):
            run_pump(pump)
        where = f"power loss #{n} before '{scenario.points[n - 1]}'"
        # The pump comes back on a complete, verified image.
        slot = pump.power_on()
        image = pump.config().slots[slot].read_bytes()
        if image not in scenario.images:
            failures.append(f"{where}: boots slot {slot} holding an unverified image")
            continue
        # The agent resumes and ends like an uninterrupted run.
        state = run_pump(pump)
        agent = Agent(pump.config())
        env = agent.boot.read()
        committed = pump.config().slots[env.committed].read_bytes()
        record = agent.store.load()
        problems = []
        if state is not AgentState.IDLE:
            problems.append(f"rests in {state}")
        if committed != scenario.expect_committed or pump.booted_image()[1] != committed:
            problems.append(f"runs slot {pump.booted_image()[0]}, committed {env.committed}")
        if env.trial is not None:
            problems.append(f"trial {env.trial} left behind")
        if agent.counter.read() != scenario.images[committed]:
            problems.append(f"anti-rollback counter {agent.counter.read()}")
        if record.outcome is None or record.outcome.result != scenario.expect_result:
            problems.append(f"outcome {record.outcome}")
        if agent.outbox.pending():
            problems.append("events left undelivered")
        if problems:
            failures.append(f"{where}: {'; '.join(problems)}")
        shutil.rmtree(pump.dir)
    assert not failures, "\n".join(failures)
