"""The bootloader's slot selection, as one pure function.

Every backend's ``boot()`` runs this, and the GRUB ``grub.cfg`` snippet and the
U-Boot ``bootcmd`` script in docs/boot-control.md implement the same rule, so
what the simulator boots is what a real pump boots.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from device_agent.bootctl._base import BootEnv

__all__ = ["select_boot"]


def select_boot(env: BootEnv) -> tuple[str, BootEnv]:
    """Choose the slot to boot and the environment to persist before booting it.

    A trial slot with attempts left is booted and loses one attempt. Otherwise
    the committed slot boots and ``trial`` stays set with 0 attempts, so the
    agent, running on the committed slot again, can see that the trial ran
    out and report the rollback.

    Args:
        env: The environment as the bootloader finds it.

    Returns:
        The slot to boot and the environment after this boot (``env`` itself
        when nothing changes, so callers can skip the write).
    """
    if env.trial is not None and env.attempts_left > 0:
        return env.trial, replace(env, attempts_left=env.attempts_left - 1)
    return env.committed, env
