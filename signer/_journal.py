"""What a repository write created, so that a failed one leaves nothing behind.

A publish writes new target files (in new directories), new versioned metadata,
a new snapshot and, last and atomically, ``timestamp.json``. Until that replace
nothing it wrote is reachable by clients, so the repository is unchanged for
them; but the files stay on disk as junk that fills it further (a full disk is
the usual reason the write failed) and that no later publish references.

A :class:`WriteJournal` records each file and directory the write creates
(never one that was there before) and, when the write fails before its commit
point (``timestamp.json`` holding the new bytes), removes exactly those, fsyncing
each directory it changed, so the repository is byte for byte what it was. After
the commit point the write is published and nothing is removed (DESIGN.md,
Trust model; threats PWR-1 and SRV-DOS: a disk filled by failed publishes).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from pumpguard.fsutil import fsync_dir, make_dirs

__all__ = ["WriteJournal"]

logger = logging.getLogger(__name__)


class WriteJournal:
    """Files and directories one repository write created, in creation order."""

    def __init__(self) -> None:
        self._files: list[Path] = []
        self._dirs: list[Path] = []
        self._commit: tuple[Path, bytes] | None = None

    def make_dirs(self, path: Path) -> None:
        """Create ``path`` durably (:func:`~pumpguard.fsutil.make_dirs`), recording new folders."""
        make_dirs(path, self._dirs)

    def creating(self, path: Path) -> None:
        """Record that the write is about to create ``path``.

        Call it before writing. A path that already exists is not recorded:
        it predates this write (a leftover of a killed one, say) and is never
        removed by it.
        """
        if not os.path.lexists(path) and path not in self._files:
            self._files.append(path)

    def commit_point(self, path: Path, data: bytes) -> None:
        """Declare that once ``path`` holds ``data`` the write is visible to clients.

        Call it just before that final replace (``timestamp.json``, or a new
        root, which clients probe for).
        """
        self._commit = (path, data)

    def visible(self) -> bool | None:
        """Whether the commit point was reached; None when that cannot be told."""
        if self._commit is None:
            return False
        path, data = self._commit
        try:
            return path.read_bytes() == data
        except FileNotFoundError:
            return False
        except OSError as e:
            logger.error("cannot read %s to tell whether the write is visible: %s", path, e)
            return None

    def undo(self) -> list[Path]:
        """Remove what the write created, newest first, unless it may be visible.

        Returns:
            The paths that could not be removed (empty when the repository is
            as it was). Nothing is removed, and nothing returned, when the
            commit point was or may have been reached.
        """
        if self.visible() is not False:
            return []
        left: list[Path] = []
        changed: set[Path] = set()
        for path in reversed(self._files):
            try:
                path.unlink(missing_ok=True)
                changed.add(path.parent)
            except OSError as e:
                logger.error("cannot remove %s of the failed write: %s", path, e)
                left.append(path)
        for directory in reversed(self._dirs):
            try:
                directory.rmdir()
                changed.discard(directory)
                changed.add(directory.parent)
            except FileNotFoundError:
                changed.add(directory.parent)
            except OSError as e:
                logger.error("cannot remove folder %s of the failed write: %s", directory, e)
                left.append(directory)
        for directory in sorted(changed, key=lambda p: len(p.parts), reverse=True):
            # Best effort: the removals are already done, and a lost one only
            # leaves an unreferenced file, as before this journal existed.
            with contextlib.suppress(OSError):
                fsync_dir(directory)
        self._files.clear()
        self._dirs.clear()
        return left
