"""Test support for the boot-control backends: real tools, env files, damage.

``make_backend(kind, directory)`` builds a backend of each kind on files in
``directory`` (a ``fw_env.config`` with two env-file lines for U-Boot). The
GRUB and U-Boot backends run the real ``grub-editenv``, ``fw_printenv``,
``fw_setenv`` and ``mkenvimage``; ``require_tool`` skips a test without them,
or fails it under ``CI=true`` (``scripts/install-test-deps.sh`` installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from device_agent.bootctl import (
    BootControl,
    FileBootControl,
    GrubBootControl,
    UBootBootControl,
)
from device_agent.bootctl.file import COPY_SIZE, encode_copy
from device_agent.bootctl.uboot import read_fw_env_config

__all__ = [
    "KINDS",
    "SLOTS",
    "TOOLS",
    "Crash",
    "EnvCopyRegion",
    "crash_at",
    "env_copies",
    "env_files",
    "flip_byte",
    "make_backend",
    "raw_set",
    "require_tool",
    "snapshot",
    "write_fw_env_config",
]

KINDS = ("file", "grub", "uboot")
SLOTS = ("a", "b")
#: The real tools each backend needs.
TOOLS = {
    "file": (),
    "grub": ("grub-editenv",),
    "uboot": ("fw_printenv", "fw_setenv", "mkenvimage"),
}
UBOOT_ENV_SIZE = 0x4000


def require_tool(name: str) -> str:
    """Return the path of tool ``name``; skip the test without it (fail under CI=true)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed; run scripts/install-test-deps.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def write_fw_env_config(directory: Path, size: int = UBOOT_ENV_SIZE) -> Path:
    """Write a ``fw_env.config`` naming two env files in ``directory`` (redundant env)."""
    config = directory / "fw_env.config"
    config.write_text(
        "# device offset envsize\n"
        f"{directory / 'uboot-env.0'} 0x0 {size:#x}\n"
        f"{directory / 'uboot-env.1'} 0x0 {size:#x}\n",
        encoding="utf-8",
    )
    return config


def make_backend(kind: str, directory: Path, slots: tuple[str, ...] = SLOTS) -> BootControl:
    """A backend of ``kind`` whose environment lives in ``directory`` (not created yet)."""
    for tool in TOOLS[kind]:
        require_tool(tool)
    directory.mkdir(parents=True, exist_ok=True)
    if kind == "file":
        return FileBootControl(directory / "bootenv", slots)
    if kind == "grub":
        return GrubBootControl(directory / "grubenv", slots)
    return UBootBootControl(write_fw_env_config(directory), slots)


@dataclass(frozen=True)
class EnvCopyRegion:
    """Where one redundant copy of an environment lies."""

    path: Path
    offset: int
    size: int


def env_copies(backend: BootControl) -> list[EnvCopyRegion]:
    """The redundant copies of a file or U-Boot backend's environment."""
    if isinstance(backend, FileBootControl):
        return [EnvCopyRegion(backend.path, i * COPY_SIZE, COPY_SIZE) for i in range(2)]
    if isinstance(backend, UBootBootControl):
        return [
            EnvCopyRegion(c.device, c.offset, c.size)
            for c in read_fw_env_config(backend.config_file)
        ]
    raise TypeError(f"{backend!r} has no redundant copies")


def env_files(backend: BootControl) -> list[Path]:
    """The files that hold a backend's environment."""
    if isinstance(backend, GrubBootControl):
        return [backend.env_file]
    return list(dict.fromkeys(c.path for c in env_copies(backend)))


def snapshot(backend: BootControl) -> dict[Path, bytes]:
    """The bytes of every env file that exists."""
    return {p: p.read_bytes() for p in env_files(backend) if p.exists()}


def flip_byte(path: Path, offset: int) -> None:
    """Invert one byte of ``path`` in place (a bit error or a torn sector)."""
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def raw_set(backend: BootControl, committed: str, trial: str, attempts: str) -> None:
    """Store raw values in the env, bypassing all validation (an attacker or a bug).

    ``trial`` "" means none. For the file backend ``attempts`` becomes a JSON
    number when it looks like one, else stays a string.
    """
    if isinstance(backend, FileBootControl):
        number = attempts.lstrip("-")
        payload = {
            "committed": committed,
            "trial": trial or None,
            "attempts_left": int(attempts) if number.isdigit() else attempts,
        }
        block = encode_copy(1000, json.dumps(payload).encode())
        with backend.path.open("r+b") as f:
            f.write(block)
        return
    values = [f"pg_committed={committed}", f"pg_trial={trial}", f"pg_attempts={attempts}"]
    if isinstance(backend, GrubBootControl):
        argv = ["grub-editenv", str(backend.env_file), "set", *values]
        subprocess.run(argv, check=True, capture_output=True)
        return
    assert isinstance(backend, UBootBootControl)
    script = backend.config_file.parent / "raw-script"
    script.write_text("".join(v + "\n" for v in values), encoding="utf-8")
    argv = ["fw_setenv", "-c", str(backend.config_file), "-s", str(script)]
    subprocess.run(argv, check=True, capture_output=True)


class Crash(BaseException):
    """A simulated power loss (BaseException, so no ``except Exception`` swallows it)."""


def crash_at(n: int, labels: list[str]) -> Callable[[str], None]:
    """A crash hook that records every crash point and raises at the ``n``-th (1-based)."""

    def hook(label: str) -> None:
        labels.append(label)
        if len(labels) == n:
            raise Crash(label)

    return hook
