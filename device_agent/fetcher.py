"""The agent's HTTP fetcher: deadlines, length caps, Range resume, mutual TLS.

:class:`AgentFetcher` is the only network code of the agent. ngclient uses it
through :class:`tuf.ngclient.FetcherInterface` for metadata; the download
module uses :meth:`AgentFetcher.stream` to write a firmware image straight
into a slot, resuming with HTTP Range after an interruption.

Defences (TUF spec, section 1.5.2, "Attacks and weaknesses"):

* *Slow retrieval*: each file has an overall deadline on the time spent
  waiting for the server (connect, headers and every read), not only a gap
  timeout, so a server trickling one byte a second fails in time. The socket
  timeout of each read is cut to what is left of the deadline, and a watchdog
  shuts the socket down when the response head, or any single read of the
  body, is still running when the deadline passes: no parsing inside
  http.client or the TLS layer, however many receives it makes, can outlast
  it. Time the caller spends between chunks (writing to the slot, rate
  limiting) does not count: the deadline is on the server, not on the pump.
* *Endless data*: only bodies framed by a ``Content-Length`` are read. A
  response without one (read until the server closes) or with a
  ``Transfer-Encoding`` is refused before its body is touched: http.client
  parses chunked framing (chunk-size lines, unlimited trailer lines) inside
  a single read and throws it away, so neither the length cap nor the
  per-read deadline would ever see those bytes. :meth:`AgentFetcher.stream`
  refuses an announced length above what TUF signed, never yields more than
  the caller's ``max_length``; ngclient caps metadata through
  ``download_bytes``.
* A transfer that ends, or would end, before the length it needs (a dropped
  connection, a ``206`` covering only part of the rest, a ``200`` shorter
  than the prefix the pump already holds) is a plain
  :class:`~tuf.api.exceptions.DownloadError`: retried and resumed later, not
  mistaken for a wrong image. A
  :class:`~tuf.api.exceptions.DownloadLengthMismatchError` (the update is
  refused) means more than signed, announced or sent, or a response stating
  that the file itself is shorter than signed (a ``200``'s
  ``Content-Length``, a ``206``'s complete length) in agreement with the
  prefix received before (TUF spec 5.7.3).
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
:mod:`device_agent.download` map them to agent errors. Anything else that a
malformed response makes the HTTP stack raise is turned into a
``DownloadError`` too: no response can stop the agent.
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

import urllib3
from tuf.api import exceptions
from tuf.ngclient import FetcherInterface

from pumpguard.errors import ConfigError
from pumpguard.http import check_server_url

__all__ = ["DEFAULT_CHUNK_SIZE", "AgentFetcher"]

logger = logging.getLogger(__name__)

#: Largest piece read from the network at once, and so the largest chunk a
#: caller holds in memory.
DEFAULT_CHUNK_SIZE = 1024 * 1024

# ASCII digits only: str.isdigit() and \d also accept other Unicode digits
# ("\u00b2", which int() then refuses with a ValueError); 18 digits are more
# than any file needs.
_CONTENT_LENGTH_RE = re.compile(r"[0-9]{1,18}")
_CONTENT_RANGE_RE = re.compile(r"bytes ([0-9]{1,18})-([0-9]{1,18})/([0-9]{1,18}|\*)")


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

        ngclient caps the length itself; the deadline is :attr:`deadline`, and
        the response must be framed by a ``Content-Length``.

        Raises:
            exceptions.SlowRetrievalError: The deadline passed.
            exceptions.DownloadHTTPError: The server answered with an error.
            exceptions.DownloadError: Any other transfer failure.
        """
        try:
            clock = _Clock(self.deadline, url)
            response = self._request(url, {}, clock)
            try:
                if response.status != 200:
                    raise exceptions.DownloadHTTPError(
                        f"{url}: HTTP status {response.status}", response.status
                    )
                _framed_length(response, url)
            except BaseException:
                _discard(response)
                raise
        except exceptions.DownloadError:
            raise
        except Exception as e:  # a malformed response must not stop the agent
            raise exceptions.DownloadError(f"{url}: {type(e).__name__}: {e}") from e
        return _download_errors_only(self._body(response, clock, url, expected=None), url)

    # ------------------------------------------------------------ firmware
    def stream(self, url: str, start: int, max_length: int) -> Iterator[bytes]:
        """Yield the bytes of ``url`` from offset ``start`` to at most ``max_length``.

        Sends ``Range: bytes=start-`` when ``start > 0`` and accepts a 206 whose
        ``Content-Range`` begins at ``start``; a server that ignores Range and
        answers 200 is read from the beginning and the first ``start`` bytes
        are dropped. The response must announce exactly the bytes still
        needed in its ``Content-Length`` (no chunked or close-delimited
        bodies), and exactly ``max_length - start`` bytes are yielded in total:
        a server that announces more (endless data), or states that the file
        is shorter than signed, fails the transfer as a length mismatch; one
        that sends, or would send, less than the rest fails it as a transfer
        error to retry. The file's deadline is :meth:`file_deadline` of the
        bytes to be received.

        Args:
            url: The file (a consistent-snapshot target URL).
            start: Offset of the first wanted byte, ``0 <= start <= max_length``.
            max_length: The file's length as TUF signed it.

        Raises:
            ValueError: ``start`` is out of range.
            exceptions.SlowRetrievalError: The deadline passed.
            exceptions.DownloadLengthMismatchError: The server sent or
                announced more than ``max_length`` bytes, or a file shorter.
            exceptions.DownloadHTTPError: The server answered with an error.
            exceptions.DownloadError: Any other transfer failure: the response
                is not framed by a ``Content-Length``, the body ended (or would
                end) before ``max_length``, or the response is malformed.
        """
        if not 0 <= start <= max_length:
            raise ValueError(f"start {start} is outside 0..{max_length}")
        if start == max_length:
            return
        yield from _download_errors_only(self._stream(url, start, max_length), url)

    def _stream(self, url: str, start: int, max_length: int) -> Iterator[bytes]:
        headers = {"Range": f"bytes={start}-"} if start else {}
        clock = _Clock(self.file_deadline(max_length), url)
        response = self._request(url, headers, clock)
        try:
            skip = 0
            if response.status == 206 and start:
                total = _check_content_range(
                    response.headers.get("Content-Range"), start, max_length
                )
            elif response.status == 200:
                # The server ignored Range (allowed by RFC 9110, 14.2): read the
                # prefix again and drop it.
                skip = start
                total = None
            else:
                raise exceptions.DownloadHTTPError(
                    f"{url}: HTTP status {response.status}", response.status
                )
            announced = _framed_length(response, url)
            if response.status == 200:
                total = announced
            _check_announced(announced, total, start, max_length, skip, url)
        except BaseException:
            _discard(response)
            raise
        yield from self._body(response, clock, url, expected=max_length - start, skip=skip)

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
        if _watch.fired:
            # http.client takes the end of the stream for the end of the head:
            # what it parsed before the socket was shut down is cut short.
            _discard(response)
            raise exceptions.SlowRetrievalError(
                f"{url}: the response head was not received within the deadline"
            )
        return response

    def _body(
        self,
        response: urllib3.BaseHTTPResponse,
        clock: _Clock,
        url: str,
        *,
        expected: int | None,
        skip: int = 0,
    ) -> Iterator[bytes]:
        """Yield the body; ``expected`` counts the bytes after the ``skip`` ones.

        The response's framing was checked (:func:`_framed_length`) before.
        """
        complete = False
        watchdog = _Watchdog()
        try:
            received = 0
            while True:
                chunk = self._read(response, clock, url, watchdog)
                if not chunk:
                    break
                if skip:
                    dropped = min(skip, len(chunk))
                    skip -= dropped
                    chunk = chunk[dropped:]
                    if not chunk:
                        continue
                received += len(chunk)
                if expected is not None and received > expected:
                    raise exceptions.DownloadLengthMismatchError(
                        f"{url}: server sent more than the {expected} bytes expected"
                    )
                yield chunk
            if expected is not None and received < expected:
                # Cut short (the connection dropped, or the server sent less
                # than asked): a transfer failure to retry and resume, not
                # evidence that the image is wrong.
                raise exceptions.DownloadError(
                    f"{url}: the transfer ended after {received} of the {expected} bytes expected"
                )
            complete = True
        finally:
            watchdog.stop()
            if complete:
                response.release_conn()
            else:
                # Unread bytes would poison the pooled connection: close it.
                _discard(response)

    def _read(
        self,
        response: urllib3.BaseHTTPResponse,
        clock: _Clock,
        url: str,
        watchdog: _Watchdog,
    ) -> bytes:
        """One read of at most :attr:`chunk_size`, within the file's deadline."""
        remaining = clock.remaining()
        # A gap timeout alone lets a trickling server run forever: cut the
        # socket timeout to what is left of the whole file's deadline. The
        # socket timeout bounds each receive; the watchdog bounds the read as
        # a whole, however many receives the layers below make for it.
        sock = getattr(response.connection, "sock", None)
        if sock is not None:
            sock.settimeout(min(self.read_timeout, remaining))
        start = time.monotonic()
        watchdog.arm(sock, remaining)
        try:
            # read1 returns what one receive gives, so the deadline is checked
            # between receives even when a read(amt) would wait for amt bytes.
            data = response.read1(self.chunk_size, decode_content=False)
        except (urllib3.exceptions.TimeoutError, TimeoutError) as e:
            raise exceptions.SlowRetrievalError(f"{url}: {e}") from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            if watchdog.fired:
                raise exceptions.SlowRetrievalError(
                    f"{url}: not received within the deadline ({e})"
                ) from e
            raise exceptions.DownloadError(f"{url}: {e}") from e
        finally:
            watchdog.disarm()
            clock.spend(time.monotonic() - start)
        if watchdog.fired:
            # The socket was shut down under the read, which may then look
            # like a clean end of the body.
            raise exceptions.SlowRetrievalError(f"{url}: not received within the deadline")
        return data


class _Watchdog:
    """Shut a socket down when one read outlasts the time it was given.

    One thread per transfer, idle between reads; :meth:`arm` and
    :meth:`disarm` around every read cost a lock, not a thread.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._sock: socket.socket | None = None
        self._due: float | None = None
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.fired = False

    def arm(self, sock: socket.socket | None, seconds: float) -> None:
        """Shut ``sock`` down unless :meth:`disarm` comes within ``seconds``."""
        if sock is None:
            return
        with self._cond:
            self._sock, self._due = sock, time.monotonic() + seconds
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pumpguard-read-deadline", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._sock = self._due = None

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._sock = self._due = None
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._due is None or self._sock is None:
                    self._cond.wait()
                    continue
                left = self._due - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self.fired = True
                _shutdown(self._sock)
                self._sock = self._due = None


def _shutdown(sock: socket.socket) -> None:
    """Stop every read on ``sock`` at once, from another thread."""
    with contextlib.suppress(OSError, ValueError, TypeError):  # already closed
        if isinstance(sock, socket.socket):
            # The TCP socket itself, also under TLS: SSLSocket.shutdown would
            # drop its SSL object while the reading thread still uses it.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        else:
            sock.shutdown(socket.SHUT_RDWR)


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
        _shutdown(sock)

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
    # The same check as the configured URLs, read by the parser that connects.
    try:
        check_server_url(url, "URL")
    except ConfigError as e:
        raise exceptions.DownloadError(str(e)) from e


def _framed_length(response: urllib3.BaseHTTPResponse, url: str) -> int:
    """The body's length from ``Content-Length``; refuse any other framing.

    TUF spec 1.5.2, endless data and slow retrieval: the length of every file
    is known (firmware: signed in targets metadata) or capped (metadata), so
    the body must say its length up front. Without a ``Content-Length`` the
    body runs until the server closes; with a ``Transfer-Encoding``
    (chunked) http.client reads chunk-size lines and any number of trailer
    lines inside one read and discards them, bytes that no cap counts and
    no per-read timeout sees. A server that cannot frame a static file is
    broken or hostile: the transfer fails (and is retried later) before a
    byte of the body is read.
    """
    if response.headers.get("Transfer-Encoding") is not None:
        raise exceptions.DownloadError(
            f"{url}: refusing a response with Transfer-Encoding "
            f"{response.headers.get('Transfer-Encoding')!r}: only bodies with a "
            "Content-Length are read"
        )
    announced = response.headers.get("Content-Length")
    if announced is None:
        raise exceptions.DownloadError(
            f"{url}: refusing a response without Content-Length (its end would be "
            "the server's choice)"
        )
    value = announced.strip(" \t")
    if _CONTENT_LENGTH_RE.fullmatch(value) is None:
        raise exceptions.DownloadError(f"{url}: malformed Content-Length {announced!r}")
    return int(value)


def _check_announced(
    announced: int, total: int | None, start: int, max_length: int, skip: int, url: str
) -> None:
    """Check the body's announced length against the signed length, before reading.

    The body must be exactly the rest of the file (plus the prefix a server
    ignoring Range sends again). ``total`` is the whole file's length as the
    response states it (a 200's ``Content-Length``, a 206's complete-length;
    ``None`` for ``*``).
    """
    expected = max_length - start + skip
    if announced > expected:
        # Endless data, announced: refuse before reading a byte.
        raise exceptions.DownloadLengthMismatchError(
            f"{url}: server announces {announced} bytes, at most {expected} expected"
        )
    if announced == expected:
        return
    if total is not None and start <= total < max_length:
        # The server states that the file itself is shorter than signed
        # (TUF spec 5.7.3), and that agrees with the prefix it already gave:
        # not the signed image.
        raise exceptions.DownloadLengthMismatchError(
            f"{url}: the server's file is {total} bytes, {max_length} signed"
        )
    # Fewer bytes than the transfer needs, without saying the file is short
    # (a partial range of a file of the right length), or contradicting the
    # prefix this pump already received (a file shorter than the resume
    # offset: a mirror changing under the transfer): the transfer would end
    # early, which is retried from the last checkpoint, not taken for proof
    # of a wrong image.
    raise exceptions.DownloadError(
        f"{url}: server announces {announced} bytes, {expected} expected: the transfer "
        "would end early"
    )


def _check_content_range(value: str | None, start: int, max_length: int) -> int | None:
    """Check a 206's ``Content-Range``; return the complete length (``None``: ``*``)."""
    m = _CONTENT_RANGE_RE.fullmatch(value or "")
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
    return None if total == "*" else int(total)


def _download_errors_only(chunks: Iterator[bytes], url: str) -> Iterator[bytes]:
    """Yield from ``chunks``, turning any other exception into a DownloadError.

    A malformed response can make urllib3 or http.client raise something
    unexpected (``ValueError``, ``RuntimeError``...). It must fail this
    transfer, never escape to the agent's main loop and stop the pump's agent.
    """
    try:
        yield from chunks
    except exceptions.DownloadError:
        raise
    except Exception as e:
        raise exceptions.DownloadError(f"{url}: {type(e).__name__}: {e}") from e


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    response.close()
    response.release_conn()
