"""Stream a firmware target into the inactive slot in one pass, resumably.

The image is downloaded, hashed and written into the slot in a single pass
with one bounded buffer (a network read of at most 1 MiB at a time), so
neither memory nor temporary storage grows with the image: a pump has no room
for a second copy. Nothing written here is trusted: the slot only becomes
bootable after :func:`download_to_slot` (and, before the switch,
:func:`verify_slot`) checked the length and every hash TUF signed (TUF spec
5.7.3), which the caller records in its durable state.

Resuming: hash state cannot be saved, so the agent persists only the number
of bytes known durable (``on_checkpoint``). On resume the prefix is read back
from the slot to rebuild the hashes, and the rest is fetched with HTTP Range.
A prefix that was tampered with on the pump or differs from the server's
image fails the final hash check like any other corruption.

Checkpoints come every :data:`CHECKPOINT_BYTES`, every ``checkpoint_seconds``
of downloading (a link throttled to 1 KiB/s during an infusion takes hours
for 16 MiB, and a power loss must not cost hours) and when a transfer fails,
each time for at least :data:`MIN_CHECKPOINT_BYTES` of new data. The agent
counts an attempt as progress only when its checkpoint advanced, so the
minimum is also what an attempt must deliver to count: a server that sends a
byte per connection makes no progress (threat AGT-SLOW).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from tuf.api import exceptions
from tuf.api.metadata import TargetFile

from device_agent._durable import crashpoint, fsync_dir, fsync_file
from device_agent._ratelimit import Pacer
from device_agent.config import SlotPath
from device_agent.errors import SlotError, TransferError, UpdateRefusedError
from device_agent.tuf_client import VerifiedTarget, translate_download_error
from pumpguard.contract import RefusalReason

__all__ = [
    "CHECKPOINT_BYTES",
    "CHECKPOINT_SECONDS",
    "MIN_CHECKPOINT_BYTES",
    "READ_CHUNK",
    "StreamFetcher",
    "download_to_slot",
    "verify_slot",
]

logger = logging.getLogger(__name__)

#: Bytes between two fsyncs of the slot (and calls of ``on_checkpoint``): at
#: most this much is downloaded again after a power loss.
CHECKPOINT_BYTES = 16 * 1024 * 1024
#: Seconds of downloading after which new data is checkpointed even short of
#: :data:`CHECKPOINT_BYTES` (the agent's ``[agent] checkpoint_interval``).
CHECKPOINT_SECONDS = 5.0
#: The least new data a checkpoint is taken for (unless the image is
#: complete): an fsync of the slot and a durable state write are not spent on
#: a few bytes, and an attempt that made fewer durable made no progress.
MIN_CHECKPOINT_BYTES = 64 * 1024
#: Size of the reads from the slot when hashing it back.
READ_CHUNK = 1024 * 1024

# TUF hash algorithm names that are not hashlib names (securesystemslib's).
_ALGORITHMS = {"blake2b-256": lambda: hashlib.blake2b(digest_size=32)}


class StreamFetcher(Protocol):
    """What :func:`download_to_slot` needs of :class:`~device_agent.fetcher.AgentFetcher`."""

    def stream(self, url: str, start: int, max_length: int) -> Iterator[bytes]:
        """Yield the bytes of ``url`` from ``start``, at most ``max_length`` in all."""


def download_to_slot(
    fetcher: StreamFetcher,
    target: VerifiedTarget | tuple[str, TargetFile],
    slot_path: Path,
    *,
    resume_from: int = 0,
    on_checkpoint: Callable[[int], None],
    rate_limit: Callable[[], float | None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    checkpoint_bytes: int = CHECKPOINT_BYTES,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
    on_server_time: Callable[[float], None] | None = None,
) -> None:
    """Download ``target`` into the slot at ``slot_path`` and verify it.

    Args:
        fetcher: Network access (``stream(url, start, max_length)``).
        target: A verified target, or its URL and signed :class:`TargetFile`.
        slot_path: The inactive slot: a regular file (created if absent, never
            truncated before the download) or a block device. A configured
            slot (:class:`~device_agent.config.SlotPath`) is checked once
            opened: it must not be the other slot or any other configured
            file (a symlink swapped since the configuration was loaded).
        resume_from: Bytes already durable in the slot from an interrupted
            download of the same target (as last given to ``on_checkpoint``).
        on_checkpoint: Called with ``n`` after the slot was fsynced with ``n``
            bytes of the image durable: every ``checkpoint_bytes``, after
            ``checkpoint_seconds``, before a :class:`TransferError` is raised
            (each time for at least :data:`MIN_CHECKPOINT_BYTES` new bytes)
            and, with the full length, once the image is complete and
            verified.
        rate_limit: Polled per chunk; the current limit in bytes/s or ``None``.
        progress: Called with (bytes done, total) after each chunk.
        checkpoint_bytes: Bytes between checkpoints.
        checkpoint_seconds: Seconds after which new bytes are checkpointed
            even short of ``checkpoint_bytes``.
        on_server_time: Called with the seconds spent waiting for the
            server, for each chunk and for a read that failed (not the time
            spent writing, hashing or rate limiting on the pump).

    Raises:
        UpdateRefusedError: The image does not match a hash
            (``hash-mismatch``), the server sent or announced more than
            signed (``length``), or a hash algorithm is unknown
            (``hash-algorithm``). The slot's content is garbage.
        TransferError: The transfer failed, was too slow or ended before
            the signed length; the bytes received were checkpointed first
            (if at least :data:`MIN_CHECKPOINT_BYTES`), and the download
            resumes from the last checkpoint.
        SlotError: The slot could not be read or written, or it is another
            configured file.
    """
    if isinstance(target, VerifiedTarget):
        url, target_file = target.url, target.target_file
    else:
        url, target_file = target
    length = target_file.length
    if not 0 <= resume_from <= length:
        logger.warning("resume offset %d outside 0..%d: starting over", resume_from, length)
        resume_from = 0
    hashers = _hashers(target_file)
    pacer = Pacer(rate_limit)
    fd, regular = _open_slot(slot_path)
    try:
        if regular and resume_from > os.fstat(fd).st_size:
            logger.warning("slot %s is shorter than the checkpoint: starting over", slot_path)
            resume_from = 0
        # Rebuild the hash state from the durable prefix (one read pass).
        _hash_range(fd, resume_from, hashers, slot_path)
        offset = last_checkpoint = resume_from
        checkpointed_at = time.monotonic()
        least = min(MIN_CHECKPOINT_BYTES, checkpoint_bytes)

        def checkpoint() -> None:
            nonlocal last_checkpoint, checkpointed_at
            try:
                fsync_file(fd, "slot")
            except OSError as e:
                raise SlotError(f"cannot write slot {slot_path}: {e.strerror}") from e
            last_checkpoint, checkpointed_at = offset, time.monotonic()
            on_checkpoint(offset)

        if progress is not None:
            progress(offset, length)
        try:
            for chunk in _timed(fetcher.stream(url, offset, length), on_server_time):
                # A power loss between here and the next checkpoint costs at
                # most checkpoint_bytes of download, never a wrong boot: the
                # slot is only bootable after a complete verification.
                crashpoint("write slot")
                _pwrite_all(fd, chunk, offset, slot_path)
                for h in hashers.values():
                    h.update(chunk)
                offset += len(chunk)
                new = offset - last_checkpoint
                if offset < length and (
                    new >= checkpoint_bytes
                    or (new >= least and time.monotonic() - checkpointed_at >= checkpoint_seconds)
                ):
                    checkpoint()
                if progress is not None:
                    progress(offset, length)
                pacer.account(len(chunk))
        except exceptions.DownloadError as e:
            error = translate_download_error(e, target_file.path)
            if (
                isinstance(error, TransferError)
                and offset < length
                and offset - last_checkpoint >= least
            ):
                # What arrived before the connection failed is a valid prefix
                # like any other: keep it (a network that drops often still
                # gets the image through, threat AGT-SLOW).
                checkpoint()
            raise error from e
        # TUF spec 5.7.3: the length and every hash must match the target.
        # The fetcher never yields more than signed, nor ends short without
        # an error; should it, a short image is a transfer to resume, a long
        # one a refusal.
        if offset < length:
            if offset - last_checkpoint >= least:
                checkpoint()
            raise TransferError(
                f"{target_file.path}: the transfer ended after {offset} of the {length} "
                "signed bytes",
                reason=RefusalReason.NETWORK,
            )
        if offset > length:
            raise UpdateRefusedError(
                f"{target_file.path}: the server sent {offset} of the {length} signed bytes",
                reason=RefusalReason.LENGTH,
            )
        _check_hashes(hashers, target_file)
        try:
            if regular:
                # Drop leftovers of a longer image that was in the slot.
                crashpoint("truncate slot")
                os.ftruncate(fd, length)
            fsync_file(fd, "slot")
        except OSError as e:
            raise SlotError(f"cannot write slot {slot_path}: {e.strerror}") from e
    finally:
        os.close(fd)
    on_checkpoint(length)


def verify_slot(slot_path: Path, target_file: TargetFile) -> None:
    """Check that the slot holds ``target_file``: its length and every hash.

    Only the first ``length`` bytes are read (a block device is larger).

    Raises:
        UpdateRefusedError: The slot is shorter than the target
            (``length``), a hash differs (``hash-mismatch``) or an algorithm
            is unknown (``hash-algorithm``).
        SlotError: The slot could not be read.
    """
    hashers = _hashers(target_file)
    try:
        fd = os.open(slot_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise SlotError(f"cannot open slot {slot_path}: {e.strerror}") from e
    try:
        _hash_range(fd, target_file.length, hashers, slot_path)
    finally:
        os.close(fd)
    _check_hashes(hashers, target_file)


# ---------------------------------------------------------------- internals
def _timed(
    chunks: Iterator[bytes], on_server_time: Callable[[float], None] | None
) -> Iterator[bytes]:
    """``chunks``, reporting the time each one (or the failing read) took to arrive."""
    if on_server_time is None:
        yield from chunks
        return
    while True:
        began = time.monotonic()
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        finally:
            on_server_time(time.monotonic() - began)
        yield chunk


def _hashers(target_file: TargetFile) -> dict[str, Any]:
    hashers: dict[str, Any] = {}
    if not target_file.hashes:
        raise UpdateRefusedError(
            f"{target_file.path} has no hashes", reason=RefusalReason.HASH_ALGORITHM
        )
    for algorithm in target_file.hashes:
        factory = _ALGORITHMS.get(algorithm)
        try:
            hashers[algorithm] = factory() if factory else hashlib.new(algorithm)
        except ValueError as e:
            # An algorithm we cannot compute is never silently skipped.
            raise UpdateRefusedError(
                f"{target_file.path}: unsupported hash algorithm {algorithm!r}",
                reason=RefusalReason.HASH_ALGORITHM,
            ) from e
    return hashers


def _check_hashes(hashers: dict[str, Any], target_file: TargetFile) -> None:
    for algorithm, h in hashers.items():
        if not hmac.compare_digest(h.hexdigest(), target_file.hashes[algorithm].lower()):
            raise UpdateRefusedError(
                f"{target_file.path}: {algorithm} of the image does not match the signed "
                "target (substituted or corrupted firmware)",
                reason=RefusalReason.HASH_MISMATCH,
            )


def _open_slot(slot_path: Path) -> tuple[int, bool]:
    """Open the slot for reading back and writing; ``(fd, is_regular_file)``."""
    # Never O_TRUNC: the durable prefix of an interrupted download is reused,
    # and a block device cannot be truncated anyway.
    flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
    try:
        try:
            mode = slot_path.stat().st_mode
        except FileNotFoundError:
            mode = stat.S_IFREG
            flags |= os.O_CREAT
        if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
            raise SlotError(f"slot {slot_path} is neither a regular file nor a block device")
        _check_guard(slot_path, None)
        fd = os.open(slot_path, flags, 0o600)
    except OSError as e:
        raise SlotError(f"cannot open slot {slot_path}: {e.strerror}") from e
    try:
        # Again on what was actually opened: the path may have changed in
        # between, and the descriptor is what gets written.
        _check_guard(slot_path, fd)
    except BaseException:
        os.close(fd)
        raise
    if flags & os.O_CREAT:
        # The new file's directory entry: fsyncing the file's data later does
        # not make the file itself survive a power loss.
        try:
            fsync_dir(slot_path.parent, "slot")
        except OSError as e:
            os.close(fd)
            raise SlotError(f"cannot create slot {slot_path}: {e.strerror}") from e
        except BaseException:
            os.close(fd)
            raise
    return fd, stat.S_ISREG(mode)


def _check_guard(slot_path: Path, fd: int | None) -> None:
    """Refuse a slot that is (now) the other slot or another configured file."""
    guard = slot_path.guard if isinstance(slot_path, SlotPath) else None
    if guard is None:
        return
    try:
        problem = guard.conflict(slot_path, fd)
    except OSError as e:
        raise SlotError(f"cannot examine slot {slot_path}: {e.strerror}") from e
    if problem is not None:
        raise SlotError(
            f"slot {slot_path} {problem}: refusing to write it (fix the slot's path or link)"
        )


def _hash_range(fd: int, length: int, hashers: dict[str, Any], slot_path: Path) -> None:
    offset = 0
    try:
        while offset < length:
            data = os.pread(fd, min(READ_CHUNK, length - offset), offset)
            if not data:
                raise UpdateRefusedError(
                    f"slot {slot_path} ends at {offset} bytes, {length} expected",
                    reason=RefusalReason.LENGTH,
                )
            for h in hashers.values():
                h.update(data)
            offset += len(data)
    except OSError as e:
        raise SlotError(f"cannot read slot {slot_path}: {e.strerror}") from e


def _pwrite_all(fd: int, data: bytes, offset: int, slot_path: Path) -> None:
    view = memoryview(data)
    try:
        while view:
            written = os.pwrite(fd, view, offset)
            view = view[written:]
            offset += written
    except OSError as e:
        raise SlotError(f"cannot write slot {slot_path}: {e.strerror}") from e
