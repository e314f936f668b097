"""Reading vulnerability feeds from disk: OSV folders and zips, NVD and KEV JSON.

Everything read is hashed exactly as read (the bytes of a file, or for a folder
the names and digests of its records), so an import can name what it imported
and an audit can be reproduced from the same files. Zip archives are read in
memory, member by member, with size caps; member names are only used in
messages, never as paths.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from pumpguard.fsutil import FileTooLargeError, read_capped
from pumpguard.jsonutil import StrictJSONError, loads_strict
from sbom._kev import is_kev_catalog, parse_kev
from sbom._nvd import is_nvd_feed, parse_nvd_feed
from sbom._osv import is_osv_record, parse_osv
from sbom.advisory import Advisory, KevEntry
from sbom.errors import FeedError

__all__ = ["FEED_KINDS", "Feed", "read_feed"]

#: Values of ``kind`` :func:`read_feed` accepts.
FEED_KINDS = ("auto", "osv", "nvd", "kev")

#: Largest file read whole (an NVD yearly feed is about 100 MB uncompressed).
MAX_FILE_BYTES = 1 << 30
#: Largest zip member (OSV records are kilobytes; a few reach a megabyte).
MAX_MEMBER_BYTES = 32 << 20
#: Largest total of uncompressed zip members.
MAX_ZIP_TOTAL_BYTES = 8 << 30
#: Most members of one zip (osv.dev's largest all.zip has a few hundred thousand).
MAX_ZIP_MEMBERS = 2_000_000

Progress = Callable[[int], None]


@dataclasses.dataclass(frozen=True)
class Feed:
    """What one feed file or folder held.

    Attributes:
        kind: ``osv``, ``nvd`` or ``kev``.
        name: The path as given.
        sha256: Digest of what was read (for a folder: of its sorted
            ``relative-name NUL sha256`` lines).
        advisories: OSV records or NVD CVEs.
        kev: KEV catalog entries.
        feed_version: The feed's own timestamp or catalog version, if any.
        removed: Ids of withdrawn OSV records or rejected CVEs: the import
            removes any advisory of this source stored under one of them.
    """

    kind: str
    name: str
    sha256: str
    advisories: tuple[Advisory, ...] = ()
    kev: tuple[KevEntry, ...] = ()
    feed_version: str | None = None
    removed: tuple[str, ...] = ()


def _osv_feed(name: str, digest: str, records: list[Advisory]) -> Feed:
    """An OSV feed: withdrawn records become ids to remove, not advisories."""
    return Feed(
        "osv",
        name,
        digest,
        advisories=tuple(a for a in records if a.withdrawn is None),
        removed=tuple(dict.fromkeys(a.id for a in records if a.withdrawn is not None)),
    )


def read_feed(path: Path, kind: str = "auto", progress: Progress | None = None) -> Feed:
    """Read and parse a feed.

    Args:
        path: An OSV folder (``*.json`` records below it), an osv.dev
            ``all.zip``, an OSV record, an NVD CVE JSON 2.0 feed (``.json`` or
            ``.json.gz``) or the KEV catalog.
        kind: ``auto`` to recognise the feed by its content, or the kind
            expected (then anything else is an error).
        progress: Called with the number of records parsed since the last call.

    Returns:
        The parsed feed.

    Raises:
        FeedError: The path cannot be read, or is not a feed of that kind; the
            message names the file (and zip member).
    """
    if kind not in FEED_KINDS:
        raise FeedError(f"feed kind {kind!r} is not one of {', '.join(FEED_KINDS)}")
    tick = progress or (lambda n: None)
    if path.is_dir():
        _expect(kind, "osv", path, "an OSV folder")
        digest, advisories = _read_osv_folder(path, tick)
        return _osv_feed(str(path), digest, advisories)
    data = _read_file(path)
    digest = hashlib.sha256(data).hexdigest()
    if data[:4] == b"PK\x03\x04" or path.suffix.lower() == ".zip":
        _expect(kind, "osv", path, "a zip of OSV records")
        return _osv_feed(str(path), digest, _read_osv_zip(data, path, tick))
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(data, path)
    doc = _parse_json(data, str(path))
    if is_kev_catalog(doc) and kind in ("auto", "kev"):
        version, entries = parse_kev(doc, str(path))
        tick(len(entries))
        return Feed("kev", str(path), digest, kev=tuple(entries), feed_version=version)
    if is_nvd_feed(doc) and kind in ("auto", "nvd"):
        timestamp, advisories, rejected = parse_nvd_feed(doc, str(path))
        tick(len(advisories))
        return Feed(
            "nvd",
            str(path),
            digest,
            advisories=tuple(advisories),
            feed_version=timestamp,
            removed=tuple(dict.fromkeys(rejected)),
        )
    if kind in ("auto", "osv") and (is_osv_record(doc) or isinstance(doc, list)):
        records = doc if isinstance(doc, list) else [doc]
        advisories = [parse_osv(r, f"{path}[{i}]") for i, r in enumerate(records)]
        tick(len(advisories))
        return _osv_feed(str(path), digest, advisories)
    expected = "an OSV record, an NVD CVE JSON 2.0 feed or the CISA KEV catalog"
    if kind != "auto":
        expected = {"osv": "an OSV record", "nvd": "an NVD CVE JSON 2.0 feed"}.get(
            kind, "the CISA KEV catalog"
        )
    raise FeedError(f"{path}: not {expected}")


def _expect(kind: str, actual: str, path: Path, what: str) -> None:
    if kind not in ("auto", actual):
        raise FeedError(f"{path}: is {what}, not a {kind} feed")


def _read_file(path: Path) -> bytes:
    try:
        return read_capped(path, MAX_FILE_BYTES)
    except FileTooLargeError as e:
        raise FeedError(str(e)) from e
    except OSError as e:
        raise FeedError(f"cannot read {path}: {e.strerror or e}") from e


def _gunzip(data: bytes, path: Path) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(MAX_FILE_BYTES + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise FeedError(f"{path}: corrupt gzip data: {e}") from e
    if len(out) > MAX_FILE_BYTES:
        raise FeedError(f"{path}: decompresses to more than {MAX_FILE_BYTES} bytes")
    return out


def _parse_json(data: bytes, where: str) -> object:
    try:
        return loads_strict(data)
    except StrictJSONError as e:
        raise FeedError(f"{where}: malformed JSON: {e}") from e


def _read_osv_folder(path: Path, tick: Progress) -> tuple[str, list[Advisory]]:
    lines: list[bytes] = []
    advisories: list[Advisory] = []
    for file in _json_files(path):
        data = _read_file(file)
        name = file.relative_to(path).as_posix()
        lines.append(name.encode() + b"\0" + hashlib.sha256(data).hexdigest().encode() + b"\n")
        advisories.append(parse_osv(_parse_json(data, str(file)), str(file)))
        tick(1)
    if not advisories:
        raise FeedError(f"{path}: no OSV records (*.json) in the folder")
    return hashlib.sha256(b"".join(lines)).hexdigest(), advisories


def _json_files(path: Path) -> Iterator[Path]:
    # Sorted, so the folder digest does not depend on directory order; symbolic
    # links are not followed, so a folder cannot pull in files from elsewhere.
    for file in sorted(path.rglob("*.json")):
        if file.is_file() and not file.is_symlink():
            yield file


def _read_osv_zip(data: bytes, path: Path, tick: Progress) -> list[Advisory]:
    advisories: list[Advisory] = []
    total = 0
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) > MAX_ZIP_MEMBERS:
                raise FeedError(f"{path}: more than {MAX_ZIP_MEMBERS} members")
            for member in members:
                where = f"{path}!{member.filename}"
                if not member.filename.endswith(".json"):
                    continue
                if member.file_size > MAX_MEMBER_BYTES:
                    raise FeedError(f"{where}: larger than {MAX_MEMBER_BYTES} bytes")
                with archive.open(member) as f:
                    # The header's size may lie; never read more than the cap.
                    content = f.read(MAX_MEMBER_BYTES + 1)
                if len(content) > MAX_MEMBER_BYTES:
                    raise FeedError(f"{where}: larger than {MAX_MEMBER_BYTES} bytes")
                total += len(content)
                if total > MAX_ZIP_TOTAL_BYTES:
                    raise FeedError(
                        f"{path}: members add up to more than {MAX_ZIP_TOTAL_BYTES} bytes"
                    )
                advisories.append(parse_osv(_parse_json(content, where), where))
                tick(1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError) as e:
        raise FeedError(f"{path}: corrupt zip archive: {e}") from e
    except NotImplementedError as e:  # an unsupported compression method
        raise FeedError(f"{path}: unsupported zip archive: {e}") from e
    if not advisories:
        raise FeedError(f"{path}: no OSV records (*.json) in the zip archive")
    return advisories
