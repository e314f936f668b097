"""Bundle tars: unpacked from a stream read once, front to back; packed atomically.

The reader never seeks and never holds more than one member's header in
memory: members are counted and sizes checked as each header is read, so a
tar of a million members is refused after its first ``max_members + 1``
headers, and a header claiming more bytes than the budget is refused before
its data is read (threats SRV-DOS, SGN-BUNDLE-TRAVERSAL). :mod:`tarfile`'s
stream mode would buffer a pax or GNU long-name header of any claimed size in
memory and list every member it has read, so the headers are read here and
only the fixed 512-byte block is parsed by :meth:`tarfile.TarInfo.frombuf`.

Only regular files and directories are unpacked. Links, devices, FIFOs, sparse
files, global pax headers, absolute paths, ``..`` components, control
characters and a name given twice are refused, never skipped or rewritten:
what is unpacked is exactly what the archive names.
"""

from __future__ import annotations

import errno
import os
import tarfile
import tempfile
from pathlib import Path
from typing import BinaryIO

from pumpguard.fsutil import fsync_dir
from signer.errors import BundleError

__all__ = ["unpack_tar", "write_tar"]

_BLOCK = tarfile.BLOCKSIZE
_CHUNK = 1 << 20
#: Largest pax or GNU long-name header accepted; a path is at most 4 KiB.
_MAX_EXTENSION = 64 << 10
_FILE_TYPES = frozenset({tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE})
_EXTENSION_TYPES = frozenset({tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK})
# Errors the archive's names cause (a member under a file, a name too long);
# any other OSError (ENOSPC, EIO) is this machine's and is not the bundle's fault.
_NAME_ERRNOS = frozenset(
    {errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ}
)
_WHAT = "the bundle tar"


class _Budget:
    """Reads from the stream, counting every byte against ``max_bytes``."""

    def __init__(self, stream: BinaryIO, max_bytes: int) -> None:
        self._stream = stream
        self._max = max_bytes
        self.read_bytes = 0

    def reserve(self, name: str, size: int) -> None:
        """Refuse a member whose data the budget cannot hold, before reading it."""
        if self.read_bytes + _padded(size) > self._max:
            raise BundleError(
                f"{_WHAT} is larger than {self._max} bytes (member {name!r} claims {size})"
            )

    def _read(self, n: int) -> bytes:
        parts = []
        left = n
        while left:
            chunk = self._stream.read(min(left, _CHUNK))
            if not chunk:
                break
            parts.append(chunk)
            left -= len(chunk)
        data = b"".join(parts)
        self.read_bytes += len(data)
        return data

    def exact(self, n: int) -> bytes:
        """Exactly ``n`` bytes, never more than the budget holds."""
        allowed = min(n, self._max - self.read_bytes)
        data = self._read(allowed)
        # Past the budget, one byte tells a cut-off archive from a long one.
        if len(data) < allowed or (allowed < n and not self._read(1)):
            raise BundleError(f"{_WHAT} is truncated")
        if allowed < n:
            raise BundleError(f"{_WHAT} is larger than {self._max} bytes")
        return data


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def _parse_pax(data: bytes) -> dict[str, str]:
    """The records of a pax extended header (POSIX.1-2001 ``"%d %s=%s\\n"``)."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos, pos + 21)
        digits = data[pos:space] if space > pos else b""
        if not digits.isdigit():
            raise BundleError(f"{_WHAT} has a malformed pax header")
        end = pos + int(digits)
        if end <= space + 1 or end > len(data) or data[end - 1 : end] != b"\n":
            raise BundleError(f"{_WHAT} has a malformed pax header")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        try:
            name, text = key.decode("utf-8"), value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BundleError(f"{_WHAT} has a pax header that is not UTF-8") from e
        if not eq or not name:
            raise BundleError(f"{_WHAT} has a malformed pax header")
        # Two values for one key are read differently by different tools.
        if name in records:
            raise BundleError(f"{_WHAT} repeats the pax key {name!r}")
        records[name] = text
        pos = end
    return records


def _member_name(raw: str) -> str:
    """The member's path relative to the bundle, or BundleError.

    Refused, never rewritten: tarfile's ``data`` filter strips a leading '/',
    so a member meant for ``/etc`` was unpacked inside the bundle instead of
    being reported (issue 19, finding 6).
    """
    if raw.startswith("/"):
        raise BundleError(f"{_WHAT} has a member with an absolute path: {raw!r}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise BundleError(f"{_WHAT} has a member name with control characters: {raw!r}")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BundleError(f"{_WHAT} has a member with a '..' component: {raw!r}")
    return "/".join(parts)


def _unpack_error(name: str, e: OSError) -> Exception:
    """``e`` without the temporary path it names (that is a server path)."""
    if e.errno in _NAME_ERRNOS:
        return BundleError(f"{_WHAT} member {name!r} cannot be unpacked: {e.strerror}")
    return OSError(e.errno, f"cannot unpack {_WHAT} (member {name!r}): {e.strerror}")


def _write_file(budget: _Budget, dest: Path, name: str, size: int) -> None:
    target = dest / name
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_EXCL: a name is unpacked once; O_NOFOLLOW: nothing here is a link.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise _unpack_error(name, e) from e
    try:
        with os.fdopen(fd, "wb") as out:
            left = size
            while left:
                chunk = budget.exact(min(left, _CHUNK))
                out.write(chunk)
                left -= len(chunk)
    except OSError as e:
        raise _unpack_error(name, e) from e
    budget.exact(_padded(size) - size)


def _extensions(budget: _Budget, info: tarfile.TarInfo, seen: set[bytes]) -> dict[str, str]:
    """Read the data of an extension header; its keys apply to the next member."""
    if info.type in seen:
        raise BundleError(f"{_WHAT} has two extended headers of one kind for one member")
    seen.add(info.type)
    if not 0 <= info.size <= _MAX_EXTENSION:
        raise BundleError(f"{_WHAT} has an extended header of more than {_MAX_EXTENSION} bytes")
    data = budget.exact(_padded(info.size))[: info.size]
    if info.type == tarfile.XHDTYPE:
        return _parse_pax(data)
    try:
        text = data.split(b"\0", 1)[0].decode("utf-8")
    except UnicodeDecodeError as e:
        raise BundleError(f"{_WHAT} has a long name that is not UTF-8") from e
    return {"path": text} if info.type == tarfile.GNUTYPE_LONGNAME else {}


def _header(budget: _Budget) -> tarfile.TarInfo | None:
    block = budget.exact(_BLOCK)
    if block == bytes(_BLOCK):
        return None  # the end-of-archive marker
    try:
        return tarfile.TarInfo.frombuf(block, "utf-8", "strict")
    except (tarfile.HeaderError, ValueError) as e:
        raise BundleError(f"{_WHAT} is not a tar archive ({e})") from e


def unpack_tar(stream: BinaryIO, dest: Path, *, max_bytes: int, max_members: int) -> int:
    """Unpack the tar read from ``stream`` into the empty directory ``dest``.

    Args:
        stream: The archive, read sequentially (never seeked).
        dest: An empty private directory.
        max_bytes: Most bytes read from ``stream``.
        max_members: Most members (files and directories) accepted.

    Returns:
        The bytes read from ``stream``.

    Raises:
        BundleError: The archive is malformed, too large, has too many
            members, or a member that is not a regular file or directory, is
            sparse, has an absolute or ``..`` path, or repeats a name. The
            message names members, never ``dest``.
        OSError: Unpacking failed for a reason of this machine (disk full);
            the message names no path.
    """
    budget = _Budget(stream, max_bytes)
    names: set[str] = set()
    members = 0
    pax: dict[str, str] = {}
    seen: set[bytes] = set()
    while (info := _header(budget)) is not None:
        if info.type in _EXTENSION_TYPES:
            extension = _extensions(budget, info, seen)
            if extension.keys() & pax.keys():
                raise BundleError(f"{_WHAT} gives one member's name in two extended headers")
            pax.update(extension)
            continue
        # Counted as the header is read, before its data (threat SRV-DOS).
        members += 1
        if members > max_members:
            raise BundleError(f"bundle has more than {max_members} members")
        raw = pax.pop("path", info.name)
        size = info.size
        if "size" in pax:
            text = pax.pop("size")
            if not (text.isascii() and text.isdigit() and len(text) <= 20):
                raise BundleError(f"{_WHAT} member {raw!r} has a malformed pax size")
            size = int(text)
        if info.type == tarfile.GNUTYPE_SPARSE or any(k.startswith("GNU.sparse.") for k in pax):
            raise BundleError(f"{_WHAT} member {raw!r} is a sparse file")
        pax.clear()
        seen.clear()
        if info.type not in _FILE_TYPES and info.type != tarfile.DIRTYPE:
            raise BundleError(f"{_WHAT} member {raw!r} is not a regular file or directory")
        name = _member_name(raw)
        if name in names:
            raise BundleError(f"{_WHAT} holds {name!r} twice")
        names.add(name)
        if size < 0:
            raise BundleError(f"{_WHAT} member {raw!r} has a negative size")
        if info.type == tarfile.DIRTYPE:
            if size:
                raise BundleError(f"{_WHAT} directory {raw!r} claims {size} bytes of content")
            if name:
                try:
                    (dest / name).mkdir(mode=0o700, parents=True, exist_ok=True)
                except OSError as e:
                    raise _unpack_error(name, e) from e
            continue
        if not name:
            raise BundleError(f"{_WHAT} has a file member without a name")
        budget.reserve(name, size)
        _write_file(budget, dest, name, size)
    if pax or seen:
        raise BundleError(f"{_WHAT} ends with an extended header that belongs to no member")
    return budget.read_bytes


def write_tar(root: Path, dest: Path) -> None:
    """Pack the files under ``root`` into ``dest``, atomically replacing it."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            with tarfile.open(fileobj=f, mode="w:", format=tarfile.PAX_FORMAT) as tar:
                for item in sorted(root.rglob("*")):
                    if item.is_file():
                        info = tar.gettarinfo(str(item), item.relative_to(root).as_posix())
                        # Who built the bundle is none of the tar's business.
                        info.uid = info.gid = 0
                        info.uname = info.gname = ""
                        info.mode = 0o644
                        with item.open("rb") as src:
                            tar.addfile(info, src)
            f.flush()
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        tmp.replace(dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)
