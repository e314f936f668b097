"""The streaming bundle reader the server's upload uses, read once and bounded as it reads.

`open_bundle_stream` reads a tar front to back through a stream that cannot
seek and counts every byte it is given, so the tests see exactly how much of a
hostile tar was read before it was refused (threats SRV-DOS,
SGN-BUNDLE-TRAVERSAL, SRV-INPUT). `open_bundle` on a .tar file runs the same
reader, and each hostile tar is refused by both in the same words.
"""

from __future__ import annotations

import errno
import io
import json
import stat
import tarfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from repo_support import PRODUCT, RepoEnv
from signer.bundle import check_bundle, open_bundle, open_bundle_stream
from signer.errors import BundleError
from tmpfs_support import tmpfs

BLOCK = tarfile.BLOCKSIZE
END = bytes(2 * BLOCK)
MANIFEST = json.dumps(
    {
        "format": "pumpguard-release-bundle",
        "format_version": 1,
        "product": PRODUCT,
        "version": "1.0.0",
    }
).encode()


class OneWay(io.RawIOBase):
    """``data`` as a stream that cannot seek; counts the bytes it hands out."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def seek(self, offset: int, whence: int = 0) -> int:
        raise io.UnsupportedOperation("an upload cannot seek")

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = self._data.readinto(buffer)
        self.read_bytes += n
        return n

    def stream(self) -> BinaryIO:
        return cast(BinaryIO, io.BufferedReader(self, buffer_size=BLOCK))


class HeaderOnlyTar(OneWay):
    """A ustar archive of ``count`` empty files, made only as far as it is read.

    A header is a template with its name and checksum patched in, so a million
    members cost nothing until someone reads them.
    """

    def __init__(self, count: int) -> None:
        super().__init__(b"")
        self._count = count
        self._made = 0
        self._pending = b""
        template = tarfile.TarInfo("m0000000").tobuf(tarfile.USTAR_FORMAT)
        self._tail = template[8:148], template[156:]
        self._base = sum(template) - sum(template[148:156]) + 8 * ord(" ") - sum(b"m0000000")

    def _more(self) -> bytes:
        if self._made == self._count:
            self._made += 1
            return END
        name = b"m%07d" % self._made
        self._made += 1
        middle, rest = self._tail
        return name + middle + b"%06o\0 " % (self._base + sum(name)) + rest

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while len(self._pending) < len(buffer) and self._made <= self._count:
            self._pending += self._more()
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.read_bytes += n
        return n


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def member(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, *, size: int | None = None
) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if size is None else size
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "bundle.json"
    return info.tobuf(tarfile.GNU_FORMAT) + _pad(data)


def extension(kind: bytes, data: bytes, *, size: int | None = None) -> bytes:
    return member("././@PaxHeader", data, kind, size=size)


def record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    n = len(body) + len(str(len(body)))
    n = len(body) + len(str(n))
    return str(n).encode() + body


def pax(**records: str) -> bytes:
    return extension(tarfile.XHDTYPE, b"".join(record(k, v) for k, v in records.items()))


OK = member("bundle.json", MANIFEST)


@dataclass(frozen=True)
class Hostile:
    tar: bytes
    reason: str
    #: A smaller budget than the tar's own length (the server's limit).
    max_bytes: int | None = None


HOSTILE: dict[str, Hostile] = {
    "symlink": Hostile(OK + member("l", kind=tarfile.SYMTYPE) + END, "not a regular file"),
    "hard link": Hostile(OK + member("l", kind=tarfile.LNKTYPE) + END, "not a regular file"),
    "fifo": Hostile(OK + member("f", kind=tarfile.FIFOTYPE) + END, "not a regular file"),
    "character device": Hostile(OK + member("c", kind=tarfile.CHRTYPE) + END, "not a regular"),
    "block device": Hostile(OK + member("b", kind=tarfile.BLKTYPE) + END, "not a regular file"),
    "GNU sparse file": Hostile(OK + member("s", b"x", tarfile.GNUTYPE_SPARSE) + END, "sparse"),
    "pax sparse file": Hostile(
        OK + pax(**{"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}) + member("s", b"x") + END,
        "is a sparse file",
    ),
    "global pax header": Hostile(
        extension(tarfile.XGLTYPE, record("comment", "x")) + OK + END, "not a regular file"
    ),
    "absolute path": Hostile(OK + member("/etc/cron.d/x", b"x") + END, "absolute path"),
    "absolute path in a pax header": Hostile(
        OK + pax(path="/etc/cron.d/x") + member("x", b"x") + END, "absolute path: '/etc/cron.d/x'"
    ),
    "absolute path in a GNU long name": Hostile(
        OK + extension(tarfile.GNUTYPE_LONGNAME, b"/etc/cron.d/x\0") + member("x", b"x") + END,
        "absolute path: '/etc/cron.d/x'",
    ),
    "'..' leaving the bundle": Hostile(OK + member("../escape", b"x") + END, "'..' component"),
    "'..' staying inside": Hostile(member("a/../bundle.json", MANIFEST) + END, "'..' component"),
    "'..' in a pax path": Hostile(
        OK + pax(path="targets/../../x") + member("x", b"x") + END, "'..' component"
    ),
    "second bundle.json": Hostile(OK + OK + END, "holds 'bundle.json' twice"),
    "second bundle.json as ./bundle.json": Hostile(
        OK + member("./bundle.json", b"{}") + END, "holds 'bundle.json' twice"
    ),
    "second bundle.json by pax path": Hostile(
        OK + pax(path="bundle.json") + member("other", b"{}") + END, "holds 'bundle.json' twice"
    ),
    "directory twice": Hostile(member("d", kind=tarfile.DIRTYPE) * 2 + OK + END, "holds 'd' twice"),
    "two pax headers for one member": Hostile(
        OK + pax(path="a") + pax(path="b") + member("x", b"x") + END, "two extended headers"
    ),
    "pax path and GNU long name for one member": Hostile(
        OK + pax(path="a") + extension(tarfile.GNUTYPE_LONGNAME, b"b\0") + member("x") + END,
        "name in two extended headers",
    ),
    "repeated pax key": Hostile(
        OK
        + extension(tarfile.XHDTYPE, record("path", "a") + record("path", "b"))
        + member("x", b"x")
        + END,
        "repeats the pax key 'path'",
    ),
    "malformed pax record": Hostile(
        OK + extension(tarfile.XHDTYPE, b"99 path=a\n") + member("x") + END, "malformed pax"
    ),
    "pax size that is not a number": Hostile(
        OK + pax(size="0x10") + member("x") + END, "malformed pax size"
    ),
    "oversized extended header": Hostile(
        OK + extension(tarfile.XHDTYPE, b"", size=1 << 30) + END, "more than 65536 bytes"
    ),
    "extended header belonging to no member": Hostile(
        OK + pax(path="x") + END, "belongs to no member"
    ),
    "newline in a name": Hostile(OK + member("x\nbundle.json", b"x") + END, "control char"),
    "NUL in a pax path": Hostile(
        OK + pax(path="x\0/etc") + member("x", b"x") + END, "control characters"
    ),
    "pax path not UTF-8": Hostile(
        OK + extension(tarfile.XHDTYPE, b"11 path=\xff\xfe\n") + member("x") + END, "not UTF-8"
    ),
    "file below a file": Hostile(
        OK + member("a", b"x") + member("a/b", b"y") + END, "'a/b' cannot be unpacked"
    ),
    "directory claiming content": Hostile(
        OK + member("d", kind=tarfile.DIRTYPE, size=10) + END, "claims 10 bytes"
    ),
    "file without a name": Hostile(OK + member("./", b"x") + END, "file member without a name"),
    "no bundle.json": Hostile(member("x", b"x") + END, "not a release bundle (no bundle.json)"),
    "version with a newline": Hostile(
        member("bundle.json", MANIFEST.replace(b"1.0.0", b"1.0.0\\nERROR forged")) + END,
        "is not a semantic version",
    ),
    "format_version true": Hostile(
        member("bundle.json", MANIFEST.replace(b'"format_version": 1', b'"format_version": true'))
        + END,
        "format version True is not supported",
    ),
    "truncated member data": Hostile(
        OK + member("x", b"x" * 1000)[:1000], "is truncated", max_bytes=1 << 20
    ),
    "truncated header": Hostile(OK + member("x")[:100], "is truncated"),
    "no end-of-archive marker": Hostile(OK, "is truncated"),
    "not a tar": Hostile(b"\x1f\x8b\x08" + bytes(BLOCK * 4), "is not a tar archive"),
    "member claiming a terabyte": Hostile(
        OK + member("x", size=1 << 40) + END,
        f"larger than 1048576 bytes (member 'x' claims {1 << 40})",
        max_bytes=1 << 20,
    ),
    "tar longer than max_bytes": Hostile(
        OK + member("x", b"x" * 8192) + END, "larger than 4096 bytes", max_bytes=4096
    ),
}


def _refusal(read: Callable[[], None]) -> str:
    with pytest.raises(BundleError) as excinfo:
        read()
    return str(excinfo.value)


@pytest.mark.parametrize("case", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_tar_is_refused_while_streaming_and_leaves_nothing(
    tmp_path: Path, case: Hostile
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    upload = OneWay(case.tar)
    limit = case.max_bytes or len(case.tar)

    def read() -> None:
        with open_bundle_stream(upload.stream(), spool, max_bytes=limit):
            pass

    reason = _refusal(read)
    assert case.reason in reason
    assert str(tmp_path) not in reason  # no server path in what the client is told
    assert "\n" not in reason
    # One byte past the limit at most: it tells a cut-off tar from a long one.
    assert upload.read_bytes <= limit + 1
    assert list(spool.iterdir()) == []


# A tar is never longer than its own file, so that case is the stream's alone.
AS_FILES = {k: c for k, c in HOSTILE.items() if k != "tar longer than max_bytes"}


@pytest.mark.parametrize("case", AS_FILES.values(), ids=AS_FILES.keys())
def test_open_bundle_refuses_a_hostile_tar_file_as_the_stream_reader_does(
    tmp_path: Path, case: Hostile
) -> None:
    """`release verify/sign/publish` and the server unpack one way."""
    spool = tmp_path / "spool"
    spool.mkdir()
    tar = tmp_path / "work" / "bundle.tar"
    tar.parent.mkdir()
    tar.write_bytes(case.tar)

    def stream() -> None:
        with open_bundle_stream(OneWay(case.tar).stream(), spool, max_bytes=len(case.tar)):
            pass

    def file() -> None:
        with open_bundle(tar):
            pass

    assert _refusal(file) == _refusal(stream)
    assert sorted(tar.parent.iterdir()) == [tar]


@pytest.mark.parametrize("max_members", [1, 10, 64])
def test_million_member_tar_is_refused_after_reading_max_members_plus_one_headers(
    tmp_path: Path, max_members: int
) -> None:
    """Issue 19, finding 4: getmembers() read all 1,000,000 headers (28 s, 436 MiB)."""
    upload = HeaderOnlyTar(1_000_000)
    tracemalloc.start()
    started = time.perf_counter()
    with (
        pytest.raises(BundleError, match=f"more than {max_members} members"),
        open_bundle_stream(upload.stream(), tmp_path, max_bytes=1 << 40, max_members=max_members),
    ):
        pass
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{max_members=}: read {upload.read_bytes} B in {elapsed * 1e3:.1f} ms, peak {peak} B")
    assert upload.read_bytes <= (max_members + 1) * BLOCK
    assert elapsed < 1.0
    assert peak < 1 << 20
    assert list(tmp_path.iterdir()) == []


def test_header_only_tar_is_a_real_tar(tmp_path: Path) -> None:
    """The generator above makes what tarfile reads as that many members."""
    with tarfile.open(fileobj=HeaderOnlyTar(3000).stream(), mode="r|") as tar:
        names = [m.name for m in tar]
    assert names == [f"m{i:07d}" for i in range(3000)]


@pytest.mark.parametrize(("extra", "refused"), [(63, False), (64, True)])
def test_member_limit_counts_every_member(tmp_path: Path, extra: int, refused: bool) -> None:
    data = OK + b"".join(member(f"d{i}", kind=tarfile.DIRTYPE) for i in range(extra)) + END
    opened = open_bundle_stream(OneWay(data).stream(), tmp_path, max_bytes=len(data))
    if refused:
        with pytest.raises(BundleError, match="more than 64 members"), opened:
            pass
    else:
        with opened as bundle:
            assert (bundle.root / f"d{extra - 1}").is_dir()


def test_signed_bundle_streams_into_a_private_directory_removed_afterwards(
    repo_env: RepoEnv, tmp_path: Path
) -> None:
    tar = repo_env.bundle("1.0.0", 1, tar=True)
    spool = tmp_path / "spool"
    spool.mkdir()
    upload = OneWay(tar.read_bytes())
    with open_bundle_stream(upload.stream(), spool, max_bytes=tar.stat().st_size) as bundle:
        assert bundle.root.parent == spool
        assert stat.S_IMODE(bundle.root.stat().st_mode) == 0o700
        assert (bundle.product, bundle.version) == (PRODUCT, "1.0.0")
        verified = check_bundle(bundle, repo_env.repo.state(), datetime.now(UTC))
        assert verified.release.version == "1.0.0"
    assert list(spool.iterdir()) == []
    assert 0 < upload.read_bytes <= tar.stat().st_size


def test_directory_is_removed_when_the_block_fails(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="the caller failed"),
        open_bundle_stream(OneWay(OK + END).stream(), tmp_path, max_bytes=1 << 20) as bundle,
    ):
        assert (bundle.root / "bundle.json").is_file()
        raise RuntimeError("the caller failed")
    assert list(tmp_path.iterdir()) == []


def test_full_disk_while_unpacking_is_an_os_error_naming_no_path(tmp_path: Path) -> None:
    """ENOSPC is the server's fault, not the bundle's: OSError, not BundleError (a 422)."""
    data = OK + member("targets/big.img", b"\xa5" * (1 << 20)) + END
    with tmpfs(tmp_path / "small", size=256 << 10) as spool:
        with (
            pytest.raises(OSError) as excinfo,
            open_bundle_stream(OneWay(data).stream(), spool, max_bytes=len(data)),
        ):
            pass
        assert list(spool.iterdir()) == []
    assert not isinstance(excinfo.value, BundleError)
    assert excinfo.value.errno == errno.ENOSPC
    assert excinfo.value.filename is None
    assert str(tmp_path) not in str(excinfo.value)
    assert "'targets/big.img'" in str(excinfo.value)
