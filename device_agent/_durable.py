"""Every durable write the agent makes, in one place, with crash points.

The agent's promise after a power loss (DESIGN.md, Device agent; threat
PWR-1) can only be tested if every write, fsync and rename that must survive a
crash is visible to a test. So all of them go through this module, which calls
:func:`crashpoint` immediately before each one. In production the hook is
``None`` and a crash point costs one global lookup; the power-loss harness in
``tests/device_agent`` installs a hook that raises at the N-th point, for every
N, and then restarts the agent and the simulated boot.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "atomic_write",
    "crash_hook",
    "crashpoint",
    "fsync_dir",
    "fsync_file",
    "make_dirs_durable",
    "remove",
]

_hook: Callable[[str], None] | None = None


def crashpoint(label: str) -> None:
    """Mark the moment before a durable operation named ``label``."""
    hook = _hook
    if hook is not None:
        hook(label)


@contextlib.contextmanager
def crash_hook(hook: Callable[[str], None] | None) -> Iterator[None]:
    """Install ``hook`` as the crash-point callback for the ``with`` block."""
    global _hook
    previous, _hook = _hook, hook
    try:
        yield
    finally:
        _hook = previous


def fsync_file(f: BinaryIO | int, label: str) -> None:
    """Flush and fsync an open file (or file descriptor)."""
    crashpoint(f"fsync {label}")
    if isinstance(f, int):
        os.fsync(f)
    else:
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(path: Path, label: str) -> None:
    """Fsync a directory so a rename, create or unlink inside it is durable."""
    crashpoint(f"fsync-dir {label}")
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs_durable(path: Path, label: str) -> list[Path]:
    """Create ``path`` and any missing parents, each one durably.

    ``mkdir`` alone is not enough: until the parent directory is fsynced, a
    power loss can lose the new directory's entry, and with it everything that
    was durably written inside it (state, outbox events). So every directory
    created here is followed by an fsync of its parent; directories that
    already exist cost no write and no fsync.

    Args:
        path: The directory that must exist.
        label: Names the directory in crash points.

    Returns:
        The directories created, outermost first.

    Raises:
        FileExistsError: ``path`` or a parent exists but is not a directory.
        OSError: A directory could not be created or fsynced.
    """
    missing: list[Path] = []
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            break
        missing.append(candidate)
    created: list[Path] = []
    for directory in reversed(missing):
        crashpoint(f"mkdir {label}")
        try:
            directory.mkdir()
        except FileExistsError:
            # Created concurrently (fsync its entry anyway: whoever made it
            # may not have), or a file is in the way.
            if not directory.is_dir():
                raise
        else:
            created.append(directory)
        fsync_dir(directory.parent, label)
    return created


def atomic_write(path: Path, data: bytes, label: str, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, fsync dir.

    After a crash anywhere in here the file is either entirely old or entirely
    new; a leftover temporary file is harmless and removed by the next write.

    Args:
        path: Final name; its directory must exist.
        data: The complete new content.
        label: Names the write in crash points and errors.
        mode: Permission bits of the new file.
    """
    directory = path.parent
    crashpoint(f"write {label}")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), mode)
            fsync_file(f, label)
        crashpoint(f"rename {label}")
        tmp.replace(path)
    except Exception:
        # Only ordinary errors clean up: a simulated power loss (a
        # BaseException from the test hook) leaves the temp file behind, as a
        # real one would.
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory, label)
    for stale in directory.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def remove(path: Path, label: str) -> None:
    """Unlink ``path`` durably (no error if it is already gone)."""
    crashpoint(f"unlink {label}")
    path.unlink(missing_ok=True)
    fsync_dir(path.parent, label)
