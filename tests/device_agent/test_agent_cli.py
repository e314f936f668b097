"""``pumpguard agent``: run, status and the simulator from the command line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from agent_support import World
from repo_support import CliResult


def test_run_once_installs_then_asks_for_a_reboot(
    world: World, tmp_path: Path, run_cli: Callable[..., CliResult]
) -> None:
    world.publish("2.0.0", 2)
    pump = world.new_pump(tmp_path / "pump", "pump-0001")
    pump.power_on()

    result = run_cli("agent", "run", "--config", pump.config_path, "--once")
    assert result.code == 0, result.err
    assert "reboot requested" in result.err

    status = run_cli("agent", "status", "--config", pump.config_path, "--json")
    assert status.code == 0, status.err
    doc = json.loads(status.out)
    assert doc["state"] == "verifying-boot"
    assert doc["boot"] == {"committed": "a", "trial": "b", "attempts_left": 3}
    assert doc["update"]["version"] == "2.0.0"

    done = run_cli("agent", "simulate", "run", "--dir", pump.dir, "--json")
    assert done.code == 0, done.err
    final = json.loads(done.out)
    assert final["state"] == "idle"
    assert final["last_outcome"]["result"] == "committed"
    assert final["anti_rollback_counter"] == 2


def test_bad_config_is_one_line_and_exit_2(
    tmp_path: Path, run_cli: Callable[..., CliResult]
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("[device]\nid = 'pump-1'\n")
    result = run_cli("agent", "status", "--config", config)
    assert result.code == 2
    assert result.err.count("\n") == 1
    assert "error: " in result.err


def test_simulated_firmware_behaviours_drive_the_self_test(
    tmp_path: Path, run_cli: Callable[..., CliResult]
) -> None:
    for behaviour, code in (("ok", 0), ("selftest-fail", 1)):
        image = tmp_path / f"{behaviour}.img"
        made = run_cli(
            "agent", "simulate", "firmware", "--version", "1.2.3", "--out", image,
            "--behaviour", behaviour,
        )  # fmt: skip
        assert made.code == 0, made.err
        assert run_cli("agent", "simulate", "selftest", "--image", image).code == code
