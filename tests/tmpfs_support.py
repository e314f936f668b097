"""Test support: small real file systems (tmpfs) to fill up or make read-only.

A full disk is tested on a real one: a tmpfs of a few pages, mounted for one
test (the suite runs as root) and unmounted afterwards. Without ``mount`` (or
without the privilege) the test is skipped, and fails under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest

__all__ = ["fill", "free_inodes", "free_pages", "page_size", "remount", "tmpfs"]


def _unavailable(reason: str) -> NoReturn:
    message = f"a tmpfs cannot be mounted ({reason}); these tests need root and mount(8)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def tmpfs(where: Path, *, size: int, inodes: int | None = None) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` bytes (and ``inodes`` inodes) at ``where`` for the block."""
    mount = shutil.which("mount")
    if mount is None:
        _unavailable("no mount command")
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0755" + (f",nr_inodes={inodes}" if inodes else "")
    done = subprocess.run(
        [str(mount), "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        _unavailable(done.stderr.strip() or f"mount exited {done.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def remount(where: Path, option: str) -> None:
    """Remount the tmpfs at ``where`` with ``option`` (``ro`` or ``rw``)."""
    subprocess.run(["mount", "-o", f"remount,{option}", str(where)], check=True)


def page_size(where: Path) -> int:
    """The unit tmpfs allocates file data in."""
    return os.statvfs(where).f_frsize


def free_pages(where: Path) -> int:
    """Pages still free on the file system holding ``where``."""
    return os.statvfs(where).f_bavail


def free_inodes(where: Path) -> int:
    """Inodes still free on the file system holding ``where``."""
    return os.statvfs(where).f_favail


def fill(filler: Path, *, leave_pages: int | None = None, leave_inodes: int | None = None) -> None:
    """Use up a tmpfs with files below ``filler`` until exactly what is asked is free.

    Raises:
        AssertionError: The file system did not end up with exactly that much free.
    """
    filler.mkdir(exist_ok=True)
    if leave_pages is not None:
        pages = free_pages(filler) - leave_pages
        assert pages >= 0, f"only {free_pages(filler)} pages free, {leave_pages} asked"
        (filler / "pages").write_bytes(b"\0" * pages * page_size(filler))
        assert free_pages(filler) == leave_pages
    if leave_inodes is not None:
        count = free_inodes(filler) - leave_inodes
        assert count >= 0, f"only {free_inodes(filler)} inodes free, {leave_inodes} asked"
        for i in range(count):
            (filler / f"inode-{i}").touch()
        assert free_inodes(filler) == leave_inodes
