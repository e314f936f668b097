"""The upload spool: a locked directory per upload, its clean-up, and upload slots.

Each upload unpacks into its own directory ``DATA/uploads/up-*`` and holds an
exclusive :func:`fcntl.flock` on the ``.lock`` file inside it for as long as
it lives. A server killed mid-upload (``kill -9``, a gunicorn worker timeout,
a power loss) leaves that directory behind; :func:`sweep`, run when the app
starts and before every upload, removes each directory whose lock it can
take, so the leftovers of dead uploads go and the upload another worker
process sharing the data folder is unpacking stays (issue 19, finding 7;
threat SRV-DOS: 24 killed uploads of 256 MiB had left 5.1 GB).

Upload slots bound the uploads in flight on one machine (threat SRV-DOS):
``DATA/upload-slots`` holds ``server.<n>`` and ``token-<id>.<n>`` slot files,
and an upload holds an flock on one of each. The kernel drops a lock when its
holder dies, so a killed worker never keeps a slot, and the locks bind every
gunicorn worker process and thread alike (each open file description locks
on its own).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from update_server.errors import ServerError

__all__ = [
    "SLOTS_DIR",
    "UPLOADS_DIR",
    "SlotsBusyError",
    "sweep",
    "upload_dir",
    "upload_slots",
]

logger = logging.getLogger(__name__)

#: Where uploads unpack, below the data folder.
UPLOADS_DIR = "uploads"
#: Where the slot files live, below the data folder (never swept).
SLOTS_DIR = "upload-slots"
_PREFIX = "up-"
_LOCK = ".lock"
# What servers before issue 19 left at the top of DATA/uploads: a spool file
# and the bundle unpacked beside it. Nothing here creates them any more; an
# old worker still finishing an upload during a rolling restart may, so they
# are removed only once they are this old (s).
_LEGACY = ("upload-", ".pumpguard-bundle-")
_LEGACY_AGE = 3600.0
# A directory without its lock file is being created (the lock file follows
# within microseconds) or its creator died at once; not empty, it is removed
# only once it is this old (s).
_UNLOCKED_AGE = 60.0
_OPEN = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW


class SlotsBusyError(ServerError):
    """Every upload slot is taken.

    Attributes:
        scope: ``"token"`` when the caller's token has all its slots,
            ``"server"`` when the whole machine has.
    """

    def __init__(self, message: str, scope: str) -> None:
        super().__init__(message)
        self.scope = scope


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive lock on ``path`` (created), or None if another holds it."""
    fd = os.open(path, _OPEN | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _take_slot(slots: Path, name: str, count: int) -> int | None:
    for n in range(count):
        fd = _try_lock(slots / f"{name}.{n}")
        if fd is not None:
            return fd
    return None


@contextlib.contextmanager
def upload_slots(data_dir: Path, token_id: int, per_token: int, total: int) -> Iterator[None]:
    """Hold one of ``per_token`` slots of the token and one of ``total`` of the machine.

    The token's slot is taken first, so a token already at its bound is told
    so (and takes none of the machine's).

    Raises:
        SlotsBusyError: No slot is free (``scope`` says which).
    """
    slots = data_dir / SLOTS_DIR
    slots.mkdir(mode=0o700, exist_ok=True)
    mine = _take_slot(slots, f"token-{token_id}", per_token)
    if mine is None:
        raise SlotsBusyError(
            f"this token has {per_token} upload(s) in progress, the most it may have",
            scope="token",
        )
    try:
        server = _take_slot(slots, "server", total)
        if server is None:
            raise SlotsBusyError(
                f"the server has {total} uploads in progress, the most it takes at once",
                scope="server",
            )
        try:
            yield
        finally:
            os.close(server)  # closing the last fd drops the lock
    finally:
        os.close(mine)


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _new_locked_dir(root: Path) -> tuple[Path, int]:
    for _ in range(100):
        path = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=root))
        try:
            fd = os.open(path / _LOCK, _OPEN | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError:
            continue  # a sweep removed the empty directory first
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A sweep may have taken the fresh lock before us and removed the
        # directory; then this lock guards nothing and we start again.
        if _same_file(fd, path / _LOCK):
            return path, fd
        os.close(fd)
    raise OSError("cannot create an upload directory (swept away 100 times)")


@contextlib.contextmanager
def upload_dir(data_dir: Path) -> Iterator[Path]:
    """A new private directory under ``DATA/uploads``, locked and removed when the block ends.

    Removed whether the block succeeds or fails; only a killed process leaves
    it, for :func:`sweep`.
    """
    root = data_dir / UPLOADS_DIR
    root.mkdir(mode=0o700, exist_ok=True)
    path, fd = _new_locked_dir(root)
    try:
        yield path
    finally:
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


def _age(path: Path) -> float:
    try:
        return time.time() - os.lstat(path).st_mtime
    except FileNotFoundError:
        return 0.0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _sweep_upload(path: Path) -> bool:
    """Remove a dead upload's directory; False when its upload is alive."""
    try:
        fd = os.open(path / _LOCK, _OPEN)
    except FileNotFoundError:
        try:
            path.rmdir()  # empty: its creator died before the lock, or is creating it
        except OSError:
            if _age(path) < _UNLOCKED_AGE:
                return False
            shutil.rmtree(path)
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # an upload in flight, in this process or another
        shutil.rmtree(path)
        return True
    finally:
        os.close(fd)


def sweep(data_dir: Path) -> int:
    """Remove what dead uploads left under ``DATA/uploads``; never a live upload's files.

    Never raises: a failure is logged, and the next sweep tries again.

    Returns:
        The number of entries removed.
    """
    root = data_dir / UPLOADS_DIR
    try:
        entries = sorted(root.iterdir())
    except FileNotFoundError:
        return 0
    except OSError as e:
        logger.error("cannot list the upload spool %s: %s", root, e)
        return 0
    removed = 0
    for path in entries:
        try:
            if path.name.startswith(_PREFIX) and path.is_dir() and not path.is_symlink():
                removed += _sweep_upload(path)
            elif path.name.startswith(_LEGACY) and _age(path) >= _LEGACY_AGE:
                _remove(path)
                removed += 1
        except OSError as e:
            logger.error("cannot remove the dead upload %s: %s", path, e)
    if removed:
        logger.warning("removed %d leftover(s) of interrupted uploads from %s", removed, root)
    return removed
