"""The default backend: a redundant boot environment in one plain file.

The file holds two fixed-size copies, like U-Boot's redundant environment::

    offset 0     copy 0   (COPY_SIZE bytes)
    offset 4096  copy 1   (COPY_SIZE bytes)

Each copy is a header, a JSON payload and zero padding::

    magic   8 bytes   b"PGBENV01"
    seq     u64 LE    sequence number, +1 on every update
    length  u32 LE    payload length
    digest  32 bytes  SHA-256 of magic, seq, length and payload
    payload JSON      {"attempts_left": 0, "committed": "a", "trial": null}

An update rewrites, in place, the copy that is not the current one (the valid
copy with the highest ``seq``) with ``seq + 1`` and fsyncs it. Power lost in
the middle leaves that copy torn, so its digest fails and the reader keeps
the other, older copy: a reader sees the old or the new environment, never a
mix. The file's size and blocks never change after it is created, so an
in-place write needs no directory fsync.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from device_agent import _durable
from device_agent.bootctl._base import BootEnv, EnvBootControl, make_env
from device_agent.errors import BootControlError

__all__ = ["COPY_SIZE", "MAGIC", "FileBootControl", "decode_copy", "encode_copy"]

MAGIC = b"PGBENV01"
#: One copy per 4 KiB block, so a copy never shares a block with the other one.
COPY_SIZE = 4096
_COPIES = 2
_HEADER = struct.Struct("<8sQI32s")
_MAX_PAYLOAD = COPY_SIZE - _HEADER.size
_KEYS = ("committed", "trial", "attempts_left")


@dataclass(frozen=True)
class _Copy:
    """One copy that passed its checksum: its sequence number and payload."""

    seq: int
    payload: bytes


def _digest(seq: int, payload: bytes) -> bytes:
    return hashlib.sha256(MAGIC + struct.pack("<QI", seq, len(payload)) + payload).digest()


def encode_copy(seq: int, payload: bytes) -> bytes:
    """Return one complete copy (COPY_SIZE bytes) holding ``payload``.

    Raises:
        BootControlError: The payload does not fit in a copy.
    """
    if len(payload) > _MAX_PAYLOAD:
        raise BootControlError(f"boot env payload of {len(payload)} bytes exceeds {_MAX_PAYLOAD}")
    header = _HEADER.pack(MAGIC, seq, len(payload), _digest(seq, payload))
    return (header + payload).ljust(COPY_SIZE, b"\0")


def decode_copy(block: bytes) -> tuple[int, bytes] | None:
    """Return ``(seq, payload)`` of a copy, or None if it is torn or corrupt."""
    if len(block) != COPY_SIZE:
        return None
    magic, seq, length, digest = _HEADER.unpack_from(block)
    if magic != MAGIC or length > _MAX_PAYLOAD:
        return None
    payload = block[_HEADER.size : _HEADER.size + length]
    if _digest(seq, payload) != digest:
        return None
    return seq, payload


def _encode_env(env: BootEnv) -> bytes:
    data = {"committed": env.committed, "trial": env.trial, "attempts_left": env.attempts_left}
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


class FileBootControl(EnvBootControl):
    """Boot control on a file with two checksummed, sequence-numbered copies.

    Used by the simulator, and on a pump whose bootloader reads the same
    format. Every write goes through :mod:`device_agent._durable`, so the
    power-loss harness can crash it before each one.

    Args:
        path: The environment file (2 x COPY_SIZE bytes once initialized).
        slots: The configured slot names.
    """

    def __init__(self, path: Path, slots: Sequence[str]) -> None:
        super().__init__(slots)
        self.path = Path(path)

    def _describe(self) -> str:
        return f"boot env file {self.path}"

    def _read_copies(self) -> list[_Copy | None] | None:
        """Both copies (None where corrupt), or None if the file does not exist."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise BootControlError(f"cannot read {self._describe()}: {e}") from e
        if len(data) != _COPIES * COPY_SIZE:
            # The size is fixed at creation and in-place writes never change
            # it, so another size is damage, not an interrupted update.
            raise BootControlError(
                f"{self._describe()} is {len(data)} bytes, expected {_COPIES * COPY_SIZE}"
            )
        copies: list[_Copy | None] = []
        for i in range(_COPIES):
            decoded = decode_copy(data[i * COPY_SIZE : (i + 1) * COPY_SIZE])
            copies.append(None if decoded is None else _Copy(*decoded))
        return copies

    def _current(self, copies: list[_Copy | None]) -> tuple[int, _Copy]:
        """Index and content of the copy in force: the valid one with the highest seq."""
        valid = [(c.seq, -i, i, c) for i, c in enumerate(copies) if c is not None]
        if not valid:
            raise BootControlError(f"{self._describe()}: both copies are corrupt")
        # On equal seq (only right after creation, identical content) copy 0 wins.
        _, _, index, copy = max(valid, key=lambda v: (v[0], v[1]))
        return index, copy

    def _parse(self, copy: _Copy, index: int) -> BootEnv:
        # The copy passed its checksum, so anything wrong here was written
        # that way (or by another program): refuse instead of falling back to
        # the older copy, which would silently undo an update.
        source = f"{self._describe()} (copy {index}, seq {copy.seq})"
        try:
            data = json.loads(copy.payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BootControlError(f"{source}: payload is not JSON: {e}") from e
        if not isinstance(data, dict):
            raise BootControlError(f"{source}: payload is not a JSON object")
        missing = [k for k in _KEYS if k not in data]
        unknown = sorted(set(data) - set(_KEYS))
        if missing or unknown:
            raise BootControlError(f"{source}: missing keys {missing}, unknown keys {unknown}")
        return make_env(
            self.slots,
            source,
            data["committed"],
            data["trial"],
            data["attempts_left"],
            names=_KEYS,
        )

    def _load(self) -> BootEnv | None:
        copies = self._read_copies()
        if copies is None:
            return None
        index, copy = self._current(copies)
        return self._parse(copy, index)

    def _create(self, env: BootEnv) -> None:
        payload = _encode_env(env)
        # Both copies valid from the start (seq 1 and 0, same content), so a
        # flipped bit in either before the first update is survivable.
        data = encode_copy(1, payload) + encode_copy(0, payload)
        try:
            _durable.atomic_write(self.path, data, "bootenv file", mode=0o644)
        except OSError as e:
            raise BootControlError(f"cannot create {self._describe()}: {e}") from e

    def _store(self, env: BootEnv) -> None:
        copies = self._read_copies()
        if copies is None:
            raise BootControlError(f"{self._describe()} disappeared")
        current, copy = self._current(copies)
        target = 1 - current
        block = encode_copy(copy.seq + 1, _encode_env(env))
        label = f"bootenv file copy {target}"
        try:
            fd = os.open(self.path, os.O_RDWR)
            try:
                _durable.crashpoint(f"write {label}")
                written = os.pwrite(fd, block, target * COPY_SIZE)
                if written != len(block):
                    raise BootControlError(
                        f"{self._describe()}: short write of copy {target} ({written} bytes)"
                    )
                _durable.fsync_file(fd, label)
            finally:
                os.close(fd)
        except OSError as e:
            raise BootControlError(f"cannot write {self._describe()}: {e}") from e
