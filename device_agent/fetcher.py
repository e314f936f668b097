"""The agent's HTTP fetcher: deadlines, length caps, Range resume, mutual TLS.

:class:`AgentFetcher` is the only network code of the agent. ngclient uses it
through :class:`tuf.ngclient.FetcherInterface` for metadata; the download
module uses :meth:`AgentFetcher.stream` to write a firmware image straight
into a slot, resuming with HTTP Range after an interruption.

Defences (TUF spec, section 1.5.2, "Attacks and weaknesses"):

* *Slow retrieval*: each file has an overall deadline on the time spent
  waiting for the server (connect, headers and every read), not only a gap
  timeout, so a server trickling one byte a second fails in time. The socket
  timeout of each body read is cut to what is left of the deadline, and a
  timer shuts the socket down if the response head is not in by then, so the
  deadline is kept to within scheduling noise. Time the caller spends between chunks
  (writing to the slot, rate limiting) does not count: the deadline is on the
  server, not on the pump.
* *Endless data*: :meth:`AgentFetcher.stream` never yields more than the
  caller's ``max_length`` and raises as soon as the server sends more;
  ngclient applies its own caps to metadata through ``download_bytes``.
* Content is requested and taken as is (``Accept-Encoding: identity``, no
  decoding), so the bytes counted and hashed are the bytes TUF signed and no
  compression bomb is inflated; redirects are not followed, and proxies from
  the environment are not used (a pump's network path is configured, not
  inherited).
* Plain ``http://`` is allowed only to loopback (tests, the simulator);
  elsewhere ``https://`` with the system or a configured CA, optionally with a
  client certificate (mutual TLS).

Every failure is raised as a :class:`tuf.api.exceptions.DownloadError`
(:class:`~tuf.api.exceptions.SlowRetrievalError`,
:class:`~tuf.api.exceptions.DownloadLengthMismatchError`,
:class:`~tuf.api.exceptions.DownloadHTTPError` or the base class), the
contract ngclient expects; :mod:`device_agent.tuf_client` and
:mod:`device_agent.download` map them to agent errors.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import urllib3
from tuf.api import exceptions
from tuf.ngclient import FetcherInterface

from pumpguard.http import is_loopback

__all__ = ["DEFAULT_CHUNK_SIZE", "AgentFetcher"]

logger = logging.getLogger(__name__)

#: Largest piece read from the network at once, and so the largest chunk a
#: caller holds in memory.
DEFAULT_CHUNK_SIZE = 1024 * 1024

_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class AgentFetcher(FetcherInterface):
    """Fetch metadata and firmware over HTTP(S) with deadlines and caps.

    Args:
        version: The agent's version, sent as ``pumpguard-agent/<version>``.
        connect_timeout: Seconds to establish a connection.
        read_timeout: Seconds the server may stay silent within a response.
        deadline: Seconds of server time a metadata file may take in total,
            and the fixed part of a firmware file's deadline.
        min_rate: Bytes per second a firmware transfer must at least reach:
            a stream of ``n`` bytes has ``deadline + n / min_rate`` seconds.
        ca_file: PEM file of the CA(s) that sign the server's certificate;
            the system store when ``None``.
        client_cert: PEM client certificate for mutual TLS.
        client_key: PEM private key of ``client_cert``.
        chunk_size: Largest piece read and yielded at once.

    Raises:
        ValueError: An option is out of range, or only one of
            ``client_cert`` and ``client_key`` is given.
    """

    def __init__(
        self,
        *,
        version: str = "0",
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        deadline: float = 120.0,
        min_rate: float = 16 * 1024,
        ca_file: Path | None = None,
        client_cert: Path | None = None,
        client_key: Path | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if min(connect_timeout, read_timeout, deadline, min_rate) <= 0 or chunk_size <= 0:
            raise ValueError("timeouts, deadline, min_rate and chunk_size must be positive")
        if (client_cert is None) != (client_key is None):
            raise ValueError("mutual TLS needs both client_cert and client_key")
        self.user_agent = f"pumpguard-agent/{version}"
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.deadline = deadline
        self.min_rate = min_rate
        self.chunk_size = chunk_size
        # Connection errors are retried twice (cheap, and inside the deadline);
        # reads are not (a half-read body is resumed by the caller), and
        # redirects are refused: a TUF repository has fixed URLs.
        self._pool = urllib3.PoolManager(
            retries=urllib3.Retry(total=2, connect=2, read=0, redirect=0, status=0),
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(ca_file) if ca_file is not None else None,
            cert_file=str(client_cert) if client_cert is not None else None,
            key_file=str(client_key) if client_key is not None else None,
        )
        self._pool.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def file_deadline(self, length: int) -> float:
        """Seconds of server time allowed to transfer ``length`` bytes."""
        return self.deadline + length / self.min_rate

    # ------------------------------------------------------------ ngclient
    def _fetch(self, url: str) -> Iterator[bytes]:
        """Fetch ``url`` for ngclient (metadata, or ``download_target``).

        ngclient caps the length itself; the deadline is :attr:`deadline`.

        Raises:
            exceptions.SlowRetrievalError: The deadline passed.
            exceptions.DownloadHTTPError: The server answered with an error.
            exceptions.DownloadError: Any other transfer failure.
        """
        clock = _Clock(self.deadline, url)
        response = self._request(url, {}, clock)
        if response.status != 200:
            _discard(response)
            raise exceptions.DownloadHTTPError(
                f"{url}: HTTP status {response.status}", response.status
            )
        return self._body(response, clock, url, limit=None)

    # ------------------------------------------------------------ firmware
    def stream(self, url: str, start: int, max_length: int) -> Iterator[bytes]:
        """Yield the bytes of ``url`` from offset ``start`` to at most ``max_length``.

        Sends ``Range: bytes=start-`` when ``start > 0`` and accepts a 206 whose
        ``Content-Range`` begins at ``start``; a server that ignores Range and
        answers 200 is read from the beginning and the first ``start`` bytes
        are dropped. At most ``max_length - start`` bytes are yielded in total;
        a server that sends more (endless data) fails the transfer. The file's
        deadline is :meth:`file_deadline` of the bytes to be received.

        Args:
            url: The file (a consistent-snapshot target URL).
            start: Offset of the first wanted byte, ``0 <= start <= max_length``.
            max_length: The file's length as TUF signed it.

        Raises:
            ValueError: ``start`` is out of range.
            exceptions.SlowRetrievalError: The deadline passed.
            exceptions.DownloadLengthMismatchError: The server sent or
                announced more than ``max_length`` bytes.
            exceptions.DownloadHTTPError: The server answered with an error.
            exceptions.DownloadError: Any other transfer failure.
        """
        if not 0 <= start <= max_length:
            raise ValueError(f"start {start} is outside 0..{max_length}")
        if start == max_length:
            return
        headers = {"Range": f"bytes={start}-"} if start else {}
        clock = _Clock(self.file_deadline(max_length), url)
        response = self._request(url, headers, clock)
        skip = 0
        if response.status == 206 and start:
            try:
                _check_content_range(response.headers.get("Content-Range"), start, max_length)
            except exceptions.DownloadError:
                _discard(response)
                raise
        elif response.status == 200:
            # The server ignored Range (allowed by RFC 9110, 14.2): read the
            # prefix again and drop it.
            skip = start
        else:
            _discard(response)
            raise exceptions.DownloadHTTPError(
                f"{url}: HTTP status {response.status}", response.status
            )
        yield from self._body(response, clock, url, limit=max_length - start, skip=skip)

    # ------------------------------------------------------------ internals
    def _request(
        self, url: str, headers: dict[str, str], clock: _Clock
    ) -> urllib3.BaseHTTPResponse:
        _check_url(url)
        remaining = clock.remaining()
        all_headers = {
            "User-Agent": self.user_agent,
            "Accept-Encoding": "identity",
            **headers,
        }
        start = time.monotonic()
        _watch.remaining = remaining
        _watch.fired = False
        try:
            response = self._pool.request(
                "GET",
                url,
                headers=all_headers,
                preload_content=False,
                decode_content=False,
                redirect=False,
                timeout=urllib3.Timeout(
                    connect=min(self.connect_timeout, remaining),
                    read=min(self.read_timeout, remaining),
                ),
            )
        except urllib3.exceptions.MaxRetryError as e:
            if _watch.fired or isinstance(e.reason, urllib3.exceptions.TimeoutError):
                raise exceptions.SlowRetrievalError(f"{url}: {e.reason}") from e
            raise exceptions.DownloadError(f"{url}: {e.reason}") from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            if _watch.fired or isinstance(e, urllib3.exceptions.TimeoutError):
                raise exceptions.SlowRetrievalError(f"{url}: {e}") from e
            raise exceptions.DownloadError(f"{url}: {e}") from e
        finally:
            _watch.remaining = None
            clock.spend(time.monotonic() - start)
        return response

    def _body(
        self,
        response: urllib3.BaseHTTPResponse,
        clock: _Clock,
        url: str,
        *,
        limit: int | None,
        skip: int = 0,
    ) -> Iterator[bytes]:
        """Yield the body; ``limit`` counts the bytes after the ``skip`` ones."""
        complete = False
        try:
            announced = response.headers.get("Content-Length")
            # Endless data, announced: refuse before reading a byte.
            if (
                limit is not None
                and announced is not None
                and announced.isdigit()
                and int(announced) - skip > limit
            ):
                raise exceptions.DownloadLengthMismatchError(
                    f"{url}: server announces {int(announced) - skip} bytes, at most "
                    f"{limit} expected"
                )
            received = 0
            while True:
                chunk = self._read(response, clock, url)
                if not chunk:
                    break
                if skip:
                    dropped = min(skip, len(chunk))
                    skip -= dropped
                    chunk = chunk[dropped:]
                    if not chunk:
                        continue
                received += len(chunk)
                if limit is not None and received > limit:
                    raise exceptions.DownloadLengthMismatchError(
                        f"{url}: server sent more than the {limit} bytes expected"
                    )
                yield chunk
            complete = True
        finally:
            if complete:
                response.release_conn()
            else:
                # Unread bytes would poison the pooled connection: close it.
                _discard(response)

    def _read(self, response: urllib3.BaseHTTPResponse, clock: _Clock, url: str) -> bytes:
        """One read of at most :attr:`chunk_size`, within the file's deadline."""
        remaining = clock.remaining()
        # A gap timeout alone lets a trickling server run forever: cut the
        # socket timeout to what is left of the whole file's deadline.
        sock = getattr(response.connection, "sock", None)
        if sock is not None:
            sock.settimeout(min(self.read_timeout, remaining))
        start = time.monotonic()
        try:
            # read1 returns what one receive gives, so the deadline is checked
            # between receives even when a read(amt) would wait for amt bytes.
            data = response.read1(self.chunk_size, decode_content=False)
        except urllib3.exceptions.TimeoutError as e:
            raise exceptions.SlowRetrievalError(f"{url}: {e}") from e
        except urllib3.exceptions.HTTPError as e:
            raise exceptions.DownloadError(f"{url}: {e}") from e
        except OSError as e:
            raise exceptions.DownloadError(f"{url}: {e}") from e
        finally:
            clock.spend(time.monotonic() - start)
        return data


# The status line and headers are read inside urllib3 by http.client, one
# receive at a time, each with its own timeout: a server trickling headers
# would outlive any gap timeout. So the connection classes below arm a timer
# for the rest of the file's deadline around reading the response head and
# shut the socket down when it fires. The deadline is per thread.
_watch = threading.local()


class _HeadDeadline:
    """Shut ``sock`` down if the response head is not in within the deadline."""

    def __init__(self, sock: socket.socket | None) -> None:
        remaining: float | None = getattr(_watch, "remaining", None)
        self._timer: threading.Timer | None = None
        self._fired = False
        if sock is not None and remaining is not None:
            self._timer = threading.Timer(remaining, self._fire, (sock,))
            self._timer.daemon = True

    def _fire(self, sock: socket.socket) -> None:
        self._fired = True
        with contextlib.suppress(OSError):  # already closed: nothing to stop
            sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> None:
        if self._timer is not None:
            self._timer.start()

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join()
        if self._fired:
            _watch.fired = True


class _HTTPConnection(urllib3.connection.HTTPConnection):
    # Same signature as urllib3's own override of http.client's method.
    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]
        with _HeadDeadline(self.sock):
            return super().getresponse()


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    # Same signature as urllib3's own override of http.client's method.
    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]
        with _HeadDeadline(self.sock):
            return super().getresponse()


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Clock:
    """Server time left for one file (TUF spec 1.5.2: slow retrieval)."""

    def __init__(self, budget: float, url: str) -> None:
        self._left = budget
        self._budget = budget
        self._url = url

    def spend(self, seconds: float) -> None:
        self._left -= seconds

    def remaining(self) -> float:
        if self._left <= 0:
            raise exceptions.SlowRetrievalError(
                f"{self._url}: not received within the {self._budget:.1f} s deadline"
            )
        return self._left


def _check_url(url: str) -> None:
    # Metadata is signed, but mutual TLS credentials, the device's identity
    # and what it asks for are not: never over clear text beyond this machine.
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as e:
        raise exceptions.DownloadError(f"{url!r} is not a URL") from e
    if not host or parts.scheme not in ("http", "https"):
        raise exceptions.DownloadError(f"{url!r} is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback(host):
        raise exceptions.DownloadError(f"{url!r}: plain http is allowed to loopback only")


def _check_content_range(value: str | None, start: int, max_length: int) -> None:
    m = _CONTENT_RANGE_RE.match(value or "")
    if m is None:
        raise exceptions.DownloadError(f"206 response with bad Content-Range {value!r}")
    first, last, total = int(m.group(1)), int(m.group(2)), m.group(3)
    if first != start or last < first:
        raise exceptions.DownloadError(
            f"asked for bytes from {start}, the server sent Content-Range {value!r}"
        )
    if last >= max_length or (total != "*" and int(total) > max_length):
        raise exceptions.DownloadLengthMismatchError(
            f"Content-Range {value!r} goes beyond the expected {max_length} bytes"
        )


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    response.close()
    response.release_conn()
