"""Building a boot-control backend from the agent configuration."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from device_agent.bootctl._base import BootControl
from device_agent.bootctl._tools import TOOL_TIMEOUT
from device_agent.bootctl.file import FileBootControl
from device_agent.bootctl.grub import GrubBootControl
from device_agent.bootctl.uboot import UBootBootControl
from device_agent.errors import BootControlError

__all__ = ["BOOT_CONTROL_KINDS", "make_boot_control"]

#: The backends ``make_boot_control`` knows, with their required and optional options.
#: The first required option is the environment's location, also accepted as ``env``.
BOOT_CONTROL_KINDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "file": (frozenset({"path", "slots"}), frozenset()),
    "grub": (frozenset({"env_file", "slots"}), frozenset({"tool", "timeout"})),
    "uboot": (
        frozenset({"config_file", "slots"}),
        frozenset({"printenv", "setenv", "mkenvimage", "defaults", "timeout"}),
    ),
}

_LOCATION = {"file": "path", "grub": "env_file", "uboot": "config_file"}


def _path(kind: str, name: str, value: object) -> Path:
    if isinstance(value, Path):
        return value
    if isinstance(value, str) and value:
        return Path(value)
    raise BootControlError(f"boot control {kind!r}: option {name} must be a path, got {value!r}")


def _text(kind: str, name: str, value: object) -> str:
    if isinstance(value, str) and value:
        return value
    raise BootControlError(f"boot control {kind!r}: option {name} must be a string, got {value!r}")


def _slots(kind: str, value: object) -> Sequence[str]:
    if isinstance(value, list | tuple) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise BootControlError(
        f"boot control {kind!r}: option slots must be a list of names, got {value!r}"
    )


def _seconds(kind: str, value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise BootControlError(
        f"boot control {kind!r}: timeout must be positive seconds, got {value!r}"
    )


def make_boot_control(kind: str, **options: object) -> BootControl:
    """Build the boot-control backend ``kind`` from configuration options.

    Args:
        kind: ``"file"``, ``"grub"`` or ``"uboot"``.
        **options: The backend's constructor arguments as plain values
            (paths may be strings, ``slots`` a list): ``file``: path, slots;
            ``grub``: env_file, slots, [tool, timeout]; ``uboot``:
            config_file, slots, [printenv, setenv, mkenvimage, defaults, timeout].
            ``env`` may stand for the location (path, env_file or
            config_file), as the agent configuration's ``[boot] env`` does.

    Returns:
        The backend.

    Raises:
        BootControlError: Unknown kind, a missing or unknown option, or an
            option of the wrong type.
    """
    if kind not in BOOT_CONTROL_KINDS:
        raise BootControlError(
            f"unknown boot control {kind!r}; expected one of {sorted(BOOT_CONTROL_KINDS)}"
        )
    required, optional = BOOT_CONTROL_KINDS[kind]
    location = _LOCATION[kind]
    if "env" in options:
        if location in options:
            raise BootControlError(f"boot control {kind!r}: give env or {location}, not both")
        options[location] = options.pop("env")
    missing = sorted(required - set(options))
    unknown = sorted(set(options) - required - optional)
    if missing or unknown:
        raise BootControlError(
            f"boot control {kind!r}: missing options {missing}, unknown options {unknown}"
        )
    slots = _slots(kind, options["slots"])
    timeout = _seconds(kind, options.get("timeout", TOOL_TIMEOUT))
    if kind == "file":
        return FileBootControl(_path(kind, "path", options["path"]), slots)
    if kind == "grub":
        return GrubBootControl(
            _path(kind, "env_file", options["env_file"]),
            slots,
            tool=_text(kind, "tool", options.get("tool", "grub-editenv")),
            timeout=timeout,
        )
    defaults = options.get("defaults")
    return UBootBootControl(
        _path(kind, "config_file", options["config_file"]),
        slots,
        printenv=_text(kind, "printenv", options.get("printenv", "fw_printenv")),
        setenv=_text(kind, "setenv", options.get("setenv", "fw_setenv")),
        mkenvimage=_text(kind, "mkenvimage", options.get("mkenvimage", "mkenvimage")),
        defaults=None if defaults is None else _path(kind, "defaults", defaults),
        timeout=timeout,
    )
