"""``/tuf/metadata/...`` and ``/tuf/targets/...``: the published repository as static files.

The repository folder is plain immutable files plus ``timestamp.json`` (see
:mod:`signer.repository`), so any static server or CDN can serve it
(docs/deployment.md); this blueprint serves it for the single-machine default
with the same rules:

* strong ``ETag`` (content sha256 for metadata; targets carry their sha256 in
  their consistent-snapshot file name) and ``If-None-Match`` -> 304;
* single byte ``Range`` -> 206 / 416, ``Accept-Ranges: bytes`` (resumable
  firmware downloads into the pump's inactive slot);
* ``Cache-Control: public, max-age=31536000, immutable`` for every target and
  every versioned metadata file that ``timestamp.json`` already reaches, and
  ``no-cache`` for ``timestamp.json`` (TUF spec 5.3/5.4: the timestamp is the
  only file that changes; a cached old one would freeze pumps, threat
  TUF-FREEZE);
* only regular files below the two folders; anything else is a 404 JSON;
* a file that exists but cannot be opened now (the process is out of file
  descriptors, EMFILE/ENFILE, or another I/O error) is a 503 with
  ``Retry-After``, never a 404: a pump told "not found" for
  ``timestamp.json`` or the next root version would conclude there is none
  (threat SRV-DOS).

The pump verifies every byte it gets (TUF spec 5.3-5.7), so this code need
not be trusted for integrity; it must only not leak other files of the data
folder (keys, database) and not let a cache pin a file that may still change.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Iterator
from io import BufferedReader
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from update_server.config import ServerConfig

__all__ = ["IMMUTABLE", "NOT_CACHED", "RETRY_AFTER", "bp", "init_app"]

logger = logging.getLogger(__name__)

bp = Blueprint("tuf", __name__, url_prefix="/tuf")

#: Cache rule of every file whose content can never change once visible.
IMMUTABLE = "public, max-age=31536000, immutable"
#: Cache rule of ``timestamp.json`` and of anything not (yet) immutable: a
#: cache must ask the origin every time (a conditional request is cheap).
NOT_CACHED = "no-cache, max-age=0, must-revalidate"
_MISSING = "no-store"

_CHUNK = 256 * 1024
# One path component: no leading dot (".", "..", hidden temp files of
# atomic writes such as ".5.snapshot.json.x1y2.tmp"), a conservative alphabet
# (product names, semver, "<sha256>.<name>"); no NUL, backslash or slash.
_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+~-]{0,254}")
_VERSIONED = re.compile(r"([1-9][0-9]{0,18})\.([A-Za-z0-9_][A-Za-z0-9._-]*)\.json")
_HASHED_TARGET = re.compile(r"([0-9a-f]{64})\..+")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
# RFC 9110 14.1.1: "recipients MUST anticipate potentially large decimal
# numerals and prevent parsing errors due to integer conversion overflows".
# A position of any length is valid syntax, so it must neither be refused
# as invalid nor reach int() (Python refuses strings over 4300 digits with a
# ValueError). Past 19 significant digits it exceeds every possible file size
# (off_t is at most 2**63 - 1), so it is read as this value, which keeps the
# RFC's meaning: a first-pos past the end is unsatisfiable (416), a last-pos
# past the end means "to the end", a suffix-length past the size means the
# whole file (both 206).
_MAX_DIGITS = 19
_BEYOND_ANY_SIZE = 10**19  # the smallest number of 20 digits


#: Seconds a client is asked to wait (``Retry-After``) when a file cannot be
#: opened now: descriptors free up as the requests holding them finish.
RETRY_AFTER = 5

# What open() says when the name is not a regular file below the folder: a
# 404. O_NOFOLLOW refuses a final symbolic link with ELOOP; a file used as a
# folder is ENOTDIR. Every other error is the server's, not the name's.
_NOT_FOUND_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG})


class _UnsatisfiableRangeError(Exception):
    """The request's byte range cannot be served (416)."""


class _UnavailableError(Exception):
    """A file exists, or may, but cannot be opened now (503)."""


def _not_found(what: str) -> Response:
    response = jsonify({"error": {"code": "not_found", "message": f"no such file: {what[:300]}"}})
    response.status_code = 404
    response.headers["X-Content-Type-Options"] = "nosniff"
    # A CDN caching a 404 (CloudFront does for 10 s by default) would hide the
    # next root version or a new release from pumps for that long.
    response.headers["Cache-Control"] = _MISSING
    return response


@bp.errorhandler(_UnavailableError)
def _unavailable(_e: _UnavailableError) -> Response:
    response = jsonify(
        {
            "error": {
                "code": "unavailable",
                "message": "the server cannot open files right now; retry later",
            }
        }
    )
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER)
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Not a fact about the file: no cache may keep it.
    response.headers["Cache-Control"] = _MISSING
    return response


def _config() -> ServerConfig:
    config: ServerConfig = current_app.config["PUMPGUARD"]
    return config


def _resolve(base: Path, rel: str) -> Path | None:
    """``base/rel`` if every component is acceptable and it stays below ``base``."""
    parts = rel.split("/")
    if not parts or not all(_COMPONENT.fullmatch(p) for p in parts):
        return None
    candidate = base.joinpath(*parts)
    # Defence in depth against a symbolic link inside the folder (CWE-22):
    # the real path must still be below the real base folder.
    real_base = os.path.realpath(base)
    real = os.path.realpath(candidate)
    if os.path.commonpath([real_base, real]) != real_base or real == real_base:
        return None
    return candidate


def _open_regular(path: Path) -> tuple[int, os.stat_result] | None:
    """Open a regular file without following a final symbolic link.

    Returns:
        The descriptor and its status, or None when there is no such
        regular file (404).

    Raises:
        _UnavailableError: It cannot be opened now (EMFILE, ENFILE, EIO ...).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        if e.errno in _NOT_FOUND_ERRNOS:
            return None
        # The log names the error, never the path (it is the server's).
        logger.warning("cannot open a repository file: %s", os.strerror(e.errno or 0))
        raise _UnavailableError from e
    try:
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class _DigestCache:
    """sha256 of files by (device, inode, mtime, size): a 304 reads no content."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._items: dict[tuple[int, int, int, int], str] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int, int, int]) -> str | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: tuple[int, int, int, int], digest: str) -> None:
        with self._lock:
            if len(self._items) >= self._size:
                self._items.pop(next(iter(self._items)))
            self._items[key] = digest


def _content_digest(fd: int, st: os.stat_result) -> str:
    """sha256 of an open file, cached by its stat identity.

    Hashes what is served, the open descriptor, not the name (which a publish
    may rename over in between).
    """
    cache: _DigestCache = current_app.extensions["pumpguard.tuf.digests"]
    key = _stat_key(st)
    digest = cache.get(key)
    if digest is None:
        h = hashlib.sha256()
        offset = 0
        while chunk := os.pread(fd, _CHUNK, offset):
            h.update(chunk)
            offset += len(chunk)
        digest = h.hexdigest()
        cache.put(key, digest)
    return digest


class _Visibility:
    """Which metadata versions ``timestamp.json`` currently reaches.

    A versioned file above that version is the leftover of an interrupted
    publish and may still be replaced by a retried one (signer.repository
    writes it before the timestamp); it must not be cached as immutable, or
    a CDN could keep serving bytes that no longer match the snapshot pumps
    verify against (TUF spec 5.5.4/5.6.4, a freeze by cache poisoning).
    """

    def __init__(self) -> None:
        self._key: tuple[int, int, int, int] | None = None
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()

    def versions(self, metadata_dir: Path) -> dict[str, int]:
        try:
            st = (metadata_dir / "timestamp.json").stat()
        except OSError:
            return {}
        key = _stat_key(st)
        with self._lock:
            if key == self._key:
                return self._versions
        versions: dict[str, int] = {}
        try:
            timestamp = json.loads((metadata_dir / "timestamp.json").read_bytes())
            snap_version = int(timestamp["signed"]["meta"]["snapshot.json"]["version"])
            versions["snapshot"] = snap_version
            snapshot = json.loads((metadata_dir / f"{snap_version}.snapshot.json").read_bytes())
            for name, info in snapshot["signed"]["meta"].items():
                versions[name.removesuffix(".json")] = int(info["version"])
        except (OSError, ValueError, KeyError, TypeError):
            # Unreadable: treat nothing as immutable until the next timestamp.
            return {}
        with self._lock:
            self._key, self._versions = key, versions
        return versions


def _metadata_cache_rule(name: str, metadata_dir: Path) -> str:
    match = _VERSIONED.fullmatch(name)
    if match is None:
        # timestamp.json, and any unversioned file: always revalidated.
        return NOT_CACHED
    version, role = int(match.group(1)), match.group(2)
    if role == "root":
        # Root N is written once by rotate-root and never replaced; clients
        # walk N+1, N+2 ... (TUF spec 5.3.3), which are 404s until they exist.
        return IMMUTABLE
    visible: dict[str, int] = current_app.extensions["pumpguard.tuf.visibility"].versions(
        metadata_dir
    )
    reached = visible.get(role)
    if reached is not None and version <= reached:
        return IMMUTABLE
    return NOT_CACHED


def _position(digits: str) -> int:
    """A byte position of a Range header; any huge one as :data:`_BEYOND_ANY_SIZE`."""
    significant = digits.lstrip("0")
    if len(significant) > _MAX_DIGITS:
        return _BEYOND_ANY_SIZE
    return int(significant or "0")


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range ``[start, end)`` a Range header asks for, or None for all.

    RFC 9110 14.2: a unit other than bytes is ignored; several ranges are
    answered with the whole file (allowed; pumps ask for one); an invalid or
    unsatisfiable single range is a 416. Positions may have any number of
    digits (see :data:`_BEYOND_ANY_SIZE`).
    """
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None
    match = _RANGE.fullmatch("bytes=" + spec.replace(" ", ""))
    if match is None:
        raise _UnsatisfiableRangeError
    first, last = match.groups()
    if not first:
        if not last or size == 0:
            raise _UnsatisfiableRangeError
        suffix = _position(last)
        if suffix == 0:
            raise _UnsatisfiableRangeError
        return max(0, size - suffix), size
    start = _position(first)
    end_pos = _position(last) if last else None
    if start >= size or (end_pos is not None and end_pos < start):
        raise _UnsatisfiableRangeError
    end = min(end_pos + 1, size) if end_pos is not None else size
    return start, end


class _FileRange:
    """Streams ``[start, end)`` of an open file and closes it (also on HEAD)."""

    def __init__(self, file: BufferedReader, start: int, end: int) -> None:
        self._file = file
        self._start = start
        self._end = end

    def __iter__(self) -> Iterator[bytes]:
        self._file.seek(self._start)
        left = self._end - self._start
        while left > 0:
            chunk = self._file.read(min(_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk

    def close(self) -> None:
        self._file.close()


def _serve(fd: int, st: os.stat_result, etag: str, cache_control: str, mimetype: str) -> Response:
    """Answer GET/HEAD for an open regular file with conditional and range rules.

    Takes ownership of ``fd``: it is closed here, on any exception too, unless
    the returned response streams it (and closes it when done). Every leaked
    descriptor is one fewer for the worker; once they run out every file,
    ``timestamp.json`` included, answers 404 (an unauthenticated DoS).
    """
    try:
        file = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    # From here the file object owns the descriptor; closing it twice is safe.
    try:
        return _respond(file, st, etag, cache_control, mimetype)
    except BaseException:
        file.close()
        raise


def _respond(
    file: BufferedReader, st: os.stat_result, etag: str, cache_control: str, mimetype: str
) -> Response:
    size = st.st_size
    headers: dict[str, Any] = {
        "ETag": f'"{etag}"',
        "Cache-Control": cache_control,
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
    }
    # RFC 9110 13.2.2: If-None-Match is evaluated before Range.
    if request.if_none_match.contains_weak(etag):
        file.close()
        return Response(status=304, headers=headers)
    byte_range: tuple[int, int] | None = None
    if_range = request.headers.get("If-Range")
    # RFC 9110 13.1.5: a Range with a non-matching If-Range gets the whole file.
    if if_range is None or if_range.strip() == f'"{etag}"':
        try:
            byte_range = _byte_range(request.headers.get("Range"), size)
        except _UnsatisfiableRangeError:
            file.close()
            response = jsonify(
                {
                    "error": {
                        "code": "range_not_satisfiable",
                        "message": f"the file has {size} bytes; the requested range is "
                        "invalid or beyond its end",
                    }
                }
            )
            response.status_code = 416
            # Not the file's validator and cache rule: a shared cache must not
            # store this error in place of the firmware (as for the 404s).
            response.headers["Cache-Control"] = _MISSING
            response.headers["Accept-Ranges"] = "bytes"
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Content-Range"] = f"bytes */{size}"
            return response
    start, end = byte_range or (0, size)
    response = Response(
        _FileRange(file, start, end),
        status=206 if byte_range else 200,
        headers=headers,
        mimetype=mimetype,
        direct_passthrough=True,
    )
    response.content_length = end - start
    if byte_range:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return response


@bp.route("/metadata/<name>", methods=["GET"], merge_slashes=False)
def metadata(name: str) -> Response:
    """A metadata file: ``N.root.json``, ``N.<role>.json`` or ``timestamp.json``."""
    metadata_dir = _config().repo_dir / "metadata"
    if not name.endswith(".json"):
        return _not_found(f"metadata/{name}")
    path = _resolve(metadata_dir, name)
    opened = _open_regular(path) if path is not None else None
    if opened is None:
        return _not_found(f"metadata/{name}")
    fd, st = opened
    try:
        digest = _content_digest(fd, st)
        rule = _metadata_cache_rule(name, metadata_dir)
    except BaseException:
        os.close(fd)
        raise
    return _serve(fd, st, digest, rule, "application/json")


@bp.route("/targets/<path:target>", methods=["GET"], merge_slashes=False)
def targets(target: str) -> Response:
    """A target file: ``<product>/<version>/<sha256>.<name>`` (consistent snapshots)."""
    targets_dir = _config().repo_dir / "targets"
    path = _resolve(targets_dir, target)
    opened = _open_regular(path) if path is not None else None
    if opened is None:
        return _not_found(f"targets/{target}")
    fd, st = opened
    match = _HASHED_TARGET.fullmatch(target.rsplit("/", 1)[-1])
    if match is not None:
        # The name carries the content's sha256 (TUF consistent snapshots,
        # spec 5.7.2): it is the strong validator and the file is immutable.
        digest, rule = match.group(1), IMMUTABLE
    else:
        # Not written by the repository tooling; it may be replaced.
        try:
            digest, rule = _content_digest(fd, st), NOT_CACHED
        except BaseException:
            os.close(fd)
            raise
    return _serve(fd, st, digest, rule, "application/octet-stream")


def init_app(app: Flask) -> None:
    """Register the blueprint and its caches."""
    app.extensions["pumpguard.tuf.digests"] = _DigestCache()
    app.extensions["pumpguard.tuf.visibility"] = _Visibility()
    app.register_blueprint(bp)
