"""Release files copied into the repository once, hashed as they are copied.

A publish reads each release file exactly once: :func:`stage` copies it
beside its final place under a hidden temporary name, hashing the bytes as
it writes them, and the verification judges those digests. What
:func:`place` then renames to the hash-named file is therefore the very
bytes that were verified; a source changed after the copy cannot reach the
repository (threat SGN-BUNDLE-SWAP), and no file is read twice (a 64 MiB
firmware was read three times by the server's publish before).

Staged files are journalled (:class:`signer._journal.WriteJournal`), so a
refusal or a failed write removes them with every folder the publish
created, and the repository is byte for byte what it was.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tuf.api.metadata import TargetFile

from pumpguard.fsutil import fsync_dir
from signer._journal import WriteJournal
from signer.errors import PathOutsideDelegationError
from signer.verification import FileDigest

__all__ = ["Staged", "file_digest", "place", "stage"]

_CHUNK = 1 << 20


def file_digest(path: Path) -> FileDigest:
    """Length and sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    length = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            length += len(chunk)
    return FileDigest(length, h.hexdigest())


@dataclass(frozen=True)
class Staged:
    """Release files copied into the repository, not yet visible.

    Attributes:
        digests: Length and sha256 of each copy, by target path, measured
            while it was written.
        paths: The copy of each file, by target path.
    """

    digests: Mapping[str, FileDigest]
    paths: Mapping[str, Path]


def _folder(targets_dir: Path, product: str, path: str) -> tuple[Path, str]:
    """The folder a target path lands in, refusing any path the delegation cannot hold.

    Products delegate ``<product>/*/*``; anything else (more or fewer parts,
    ``..``, hidden names) is refused before a byte is written.

    Raises:
        PathOutsideDelegationError: ``path`` is not ``<product>/<version>/<name>``.
    """
    parts = path.split("/")
    if (
        len(parts) != 3
        or parts[0] != product
        or any(not p or p in {".", ".."} or p.startswith(".") or "\\" in p for p in parts)
    ):
        raise PathOutsideDelegationError(
            f"target {path!r} is outside {product}'s delegated paths ['{product}/*/*']"
        )
    return targets_dir / parts[0] / parts[1], parts[2]


def stage(
    targets_dir: Path, product: str, files: Mapping[str, Path], journal: WriteJournal
) -> Staged:
    """Copy every release file beside its final place, hashing what is written.

    Args:
        targets_dir: The repository's ``targets/`` folder.
        product: The product role published.
        files: Local file of every release file, by target path.
        journal: The publish's write journal (records every folder and file).

    Returns:
        The copies and their digests.

    Raises:
        PathOutsideDelegationError: A target path is not ``<product>/<version>/<name>``.
        OSError: A copy failed (the journal removes what was written).
    """
    folders = {path: _folder(targets_dir, product, path) for path in files}
    digests: dict[str, FileDigest] = {}
    paths: dict[str, Path] = {}
    for path, src in files.items():
        folder, name = folders[path]
        journal.make_dirs(folder)
        tmp = folder / f".{name}.{secrets.token_hex(8)}.staged"
        journal.creating(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
        with os.fdopen(fd, "wb") as out, src.open("rb") as f:
            # Published files are public: readable by a static web server
            # running as another user, whatever the umask.
            os.fchmod(out.fileno(), 0o644)
            digest, length = hashlib.sha256(), 0
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                length += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        digests[path] = FileDigest(length, digest.hexdigest())
        paths[path] = tmp
    return Staged(digests, paths)


def place(
    targets_dir: Path,
    staged: Staged,
    new_targets: Mapping[str, TargetFile],
    journal: WriteJournal,
) -> None:
    """Rename each verified copy to its hash-named file; the name carries its hash.

    A hash-named file already there (left by a publish killed after its
    copy) is kept if it holds the verified bytes, else replaced.
    """
    for path, target in new_targets.items():
        directory, _, name = path.rpartition("/")
        sha256 = target.hashes["sha256"]
        dest = targets_dir / directory / f"{sha256}.{name}"
        tmp = staged.paths[path]
        if dest.exists():
            if file_digest(dest).sha256 == sha256:
                tmp.unlink()
                continue
            # Same hash-prefixed name, other content: only a corrupted earlier copy.
            dest.unlink()
        journal.creating(dest)
        tmp.replace(dest)
        fsync_dir(dest.parent)
