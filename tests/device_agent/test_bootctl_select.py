"""The bootloader's selection rule (select_boot), shared by every backend."""

from __future__ import annotations

import pytest

from device_agent.bootctl import BootEnv, select_boot


@pytest.mark.parametrize(
    ("env", "slot", "after"),
    [
        pytest.param(BootEnv("a", None, 0), "a", BootEnv("a", None, 0), id="no-trial"),
        pytest.param(BootEnv("a", "b", 3), "b", BootEnv("a", "b", 2), id="trial-with-attempts"),
        pytest.param(BootEnv("a", "b", 1), "b", BootEnv("a", "b", 0), id="last-attempt"),
        pytest.param(BootEnv("a", "b", 0), "a", BootEnv("a", "b", 0), id="attempts-ran-out"),
        pytest.param(BootEnv("b", "a", 2), "a", BootEnv("b", "a", 1), id="trial-of-slot-a"),
    ],
)
def test_select_boot_follows_the_trial_rule(env: BootEnv, slot: str, after: BootEnv) -> None:
    assert select_boot(env) == (slot, after)


def test_select_boot_leaves_an_exhausted_trial_visible_for_the_rollback_report() -> None:
    booted = []
    env = BootEnv("a", "b", 2)
    for _ in range(4):
        slot, env = select_boot(env)
        booted.append(slot)
    assert booted == ["b", "b", "a", "a"]
    assert env == BootEnv("a", "b", 0)


def test_select_boot_returns_the_same_env_when_nothing_changes() -> None:
    env = BootEnv("a", None, 0)
    assert select_boot(env)[1] is env
