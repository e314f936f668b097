"""Crash-safe file writing shared by the signer, the server and the agent.

Every file that must survive a crash is written to a temporary name in the same
directory, fsynced, renamed over its final name and then the directory is
fsynced, so that after a power loss the file is either entirely old or entirely
new (DESIGN.md, Standards; threat PWR-1).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "FileTooLargeError",
    "atomic_write_bytes",
    "exclusive_lock",
    "fsync_dir",
    "make_dirs",
    "read_capped",
    "write_immutable",
]


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename or create inside it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path, created: list[Path] | None = None) -> list[Path]:
    """Create ``path`` and its missing parents durably.

    ``mkdir(parents=True)`` makes the new entries durable only once their
    parents are fsynced; a file fsynced inside a new directory can otherwise
    vanish with it after a power loss. Each directory created here has its
    parent fsynced; directories that already exist are left alone.

    Args:
        path: The directory to create.
        created: Each directory this call creates is appended here as soon as
            it exists, so that a caller undoing a failed operation (a signer
            publish) knows of those made before a later one failed.

    Returns:
        ``created``: the directories made, outermost first.
    """
    created = [] if created is None else created
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
            created.append(directory)
        except FileExistsError:  # created concurrently: not ours, still fsync
            pass
        fsync_dir(directory.parent)
    return created


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    Args:
        path: Final file name. Its directory must exist.
        data: The complete new content.
        mode: Permission bits of the new file (``0o600`` for secrets).

    Raises:
        OSError: The write failed; ``path`` keeps its old content, no temporary
            file is left, and the error names ``path``, not the temporary file.
    """
    directory = path.parent
    tmp: Path | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException as e:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None:
            # The temporary name means nothing to whoever reads the error.
            e.filename, e.filename2 = str(path), None
        raise
    fsync_dir(directory)


def write_immutable(path: Path, data: bytes) -> None:
    """Write a file that, once published, must never change.

    Writing the identical content again is a no-op (so a retried publish is
    idempotent); different content under an existing name is refused, because a
    published, versioned file must be immutable (DESIGN.md, Trust model).

    Raises:
        FileExistsError: ``path`` exists with different content.
    """
    if path.exists():
        if path.read_bytes() == data:
            return
        raise FileExistsError(f"{path} is already published with different content")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` for the ``with`` block.

    Used to serialise writers of one repository on one machine.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class FileTooLargeError(ValueError):
    """A file holds more bytes than its reader accepts (:func:`read_capped`)."""

    def __init__(self, name: str, limit: int) -> None:
        super().__init__(f"{name} is larger than {limit} bytes")
        self.name = name
        self.limit = limit


def read_capped(path: Path, limit: int, name: str | None = None) -> bytes:
    """Read a whole file of at most ``limit`` bytes, never more than ``limit + 1``.

    The one reader of input files with a size cap (SBOM inputs, VEX,
    vulnerability feeds, ``bundle.json``, JUnit reports, pump status, keys):
    a file that grows, or a FIFO or device that never ends, costs at most
    ``limit + 1`` bytes of memory, whatever its size says.

    Args:
        path: The file.
        limit: The most bytes accepted.
        name: How the error names the file (default: ``path``); a server
            passes a name without its own folders.

    Raises:
        FileTooLargeError: The file holds more than ``limit`` bytes; its
            message names the file and the limit.
        OSError: The file cannot be opened or read.
    """
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileTooLargeError(str(path) if name is None else name, limit)
    return data
