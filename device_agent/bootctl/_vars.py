"""The ``pg_*`` variables shared by the GRUB and U-Boot environments."""

from __future__ import annotations

import re
from collections.abc import Mapping

from device_agent.bootctl._base import BootEnv, make_env
from device_agent.errors import BootControlError

__all__ = ["VAR_ATTEMPTS", "VAR_COMMITTED", "VAR_NAMES", "VAR_TRIAL", "env_from_vars", "env_vars"]

VAR_COMMITTED = "pg_committed"
VAR_TRIAL = "pg_trial"
VAR_ATTEMPTS = "pg_attempts"
VAR_NAMES = (VAR_COMMITTED, VAR_TRIAL, VAR_ATTEMPTS)

# Plain decimal only: no sign, no spaces, no leading zeros, no hex. A value
# the bootloader scripts could read differently is corruption.
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,2}")


def env_vars(env: BootEnv) -> dict[str, str]:
    """The variables that store ``env`` (an empty ``pg_trial`` means no trial)."""
    return {
        VAR_COMMITTED: env.committed,
        VAR_TRIAL: env.trial or "",
        VAR_ATTEMPTS: str(env.attempts_left),
    }


def env_from_vars(values: Mapping[str, str], slots: tuple[str, ...], source: str) -> BootEnv | None:
    """Parse and validate the variables read back from a bootloader environment.

    An absent ``pg_trial`` equals an empty one (``fw_setenv`` deletes a
    variable set to the empty string).

    Args:
        values: The ``pg_*`` variables present; others are ignored.
        slots: The configured slots.
        source: Names the environment for errors.

    Returns:
        The environment, or None when none of the variables is set (the
        bootloader environment exists but was never initialized for pumpguard).

    Raises:
        BootControlError: A variable is missing or invalid; the message names it.
    """
    if not any(values.get(name) for name in VAR_NAMES):
        return None
    for name in (VAR_COMMITTED, VAR_ATTEMPTS):
        if not values.get(name):
            raise BootControlError(f"{source}: {name} is not set (the other pg_* variables are)")
    trial = values.get(VAR_TRIAL) or None
    raw_attempts = values.get(VAR_ATTEMPTS)
    attempts: object = raw_attempts
    if raw_attempts is not None and _DECIMAL.fullmatch(raw_attempts):
        attempts = int(raw_attempts)
    return make_env(slots, source, values.get(VAR_COMMITTED), trial, attempts, names=VAR_NAMES)
