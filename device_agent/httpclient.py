"""The agent's one HTTP client: a deadline, framing checks and TLS for every request.

TUF metadata and firmware (:mod:`device_agent.fetcher`), check-ins and event
posts (:mod:`device_agent.reporting`) all go through one :class:`AgentHttp`:
one connection pool, one TLS configuration (the system or a configured CA,
optionally a client certificate for mutual TLS), one URL check
(:func:`pumpguard.http.check_server_url`: plain ``http://`` only to
loopback) and the same defences against a hostile or broken server:

* *Slow retrieval* (threat AGT-SLOW, TUF spec 1.5.2): every request has a
  :class:`Deadline` on the time spent waiting for the server (connect, TLS
  handshake, sending the request, the response head and every read of the
  body), not only a gap timeout, so a server trickling one byte at a time
  fails in time. Each socket timeout is cut to what is left of the
  deadline, and one watchdog per request shuts the socket down when the
  phase it guards (connect and TLS handshake up to the response head, then
  each single read of the body) is still running when the deadline passes:
  no parsing inside http.client or the TLS layer, however many receives it
  makes, can outlast it. Time the caller spends between reads (writing to
  a slot, rate limiting) does not count: the deadline is on the server.
* *Endless data* (threat TUF-ENDLESS-DATA): only bodies framed by a
  ``Content-Length`` are read (:meth:`AgentResponse.framed_length`). A
  response without one (read until the server closes) or with a
  ``Transfer-Encoding`` is refused before its body is touched: http.client
  parses chunked framing (chunk-size lines, unlimited trailer lines) inside
  a single read and throws it away, so neither a length cap nor the
  per-read deadline would ever see those bytes. :meth:`AgentResponse.read_all`
  caps the whole body (small JSON answers) before reading it.
* Content is requested and taken as is (``Accept-Encoding: identity``, no
  decoding), so no compression bomb is inflated; redirects are not followed,
  and proxies from the environment are not used (a pump's network path is
  configured, not inherited).

Every failure is a :class:`tuf.api.exceptions.DownloadError`
(:class:`~tuf.api.exceptions.SlowRetrievalError` when the deadline passed),
the contract python-tuf's ngclient expects of a fetcher; anything else a
malformed response makes the HTTP stack raise is turned into one, so no
response can stop the agent. Callers map them to their own errors.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from pathlib import Path

import urllib3
from tuf.api import exceptions

from pumpguard.errors import ConfigError
from pumpguard.http import check_server_url

__all__ = ["AgentHttp", "AgentResponse", "Deadline"]

# ASCII digits only: str.isdigit() and \d also accept other Unicode digits
# ("\u00b2", which int() then refuses with a ValueError); 18 digits are more
# than any file needs.
_CONTENT_LENGTH_RE = re.compile(r"[0-9]{1,18}")


class Deadline:
    """Server time left for one request or file (TUF spec 1.5.2: slow retrieval).

    Args:
        budget: Seconds of server time allowed in total.
        url: Named in the error when the time is up.
    """

    def __init__(self, budget: float, url: str) -> None:
        self._left = budget
        self._budget = budget
        self._url = url

    def spend(self, seconds: float) -> None:
        """Count ``seconds`` spent waiting for the server."""
        self._left -= seconds

    def remaining(self) -> float:
        """Seconds left (positive).

        Raises:
            exceptions.SlowRetrievalError: No time is left.
        """
        if self._left <= 0:
            raise exceptions.SlowRetrievalError(
                f"{self._url}: not received within the {self._budget:.1f} s deadline"
            )
        return self._left


class AgentHttp:
    """One connection pool with the agent's TLS settings, for every request.

    Args:
        ca_file: PEM file of the CA(s) that sign the server's certificate;
            the system store when ``None``.
        client_cert: PEM client certificate for mutual TLS.
        client_key: PEM private key of ``client_cert``.

    Raises:
        ValueError: Only one of ``client_cert`` and ``client_key`` is given.
    """

    def __init__(
        self,
        *,
        ca_file: Path | None = None,
        client_cert: Path | None = None,
        client_key: Path | None = None,
    ) -> None:
        if (client_cert is None) != (client_key is None):
            raise ValueError("mutual TLS needs both client_cert and client_key")
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=2,
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(ca_file) if ca_file is not None else None,
            cert_file=str(client_cert) if client_cert is not None else None,
            key_file=str(client_key) if client_key is not None else None,
        )
        self._pool.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def open(
        self,
        method: str,
        url: str,
        *,
        deadline: Deadline,
        headers: dict[str, str],
        body: bytes | None = None,
        connect_timeout: float,
        read_timeout: float,
        connect_retries: int = 0,
    ) -> AgentResponse:
        """Send a request and receive the response head within ``deadline``.

        Args:
            method: ``GET`` or ``POST``.
            url: Checked with :func:`pumpguard.http.check_server_url`.
            deadline: Server time left; this request spends from it.
            headers: Request headers (``Accept-Encoding: identity`` is added).
            body: The request body.
            connect_timeout: Seconds to establish a connection (at most).
            read_timeout: Seconds the server may stay silent (at most).
            connect_retries: Failed connections retried (nothing was sent).

        Returns:
            The response, its body unread: close it with
            :meth:`AgentResponse.close`.

        Raises:
            exceptions.SlowRetrievalError: The deadline passed.
            exceptions.DownloadError: Any other failure (URL refused, no
                connection, malformed response).
        """
        _check_url(url)
        remaining = deadline.remaining()
        watchdog = _Watchdog()
        start = time.monotonic()
        # Connect, TLS handshake, request and response head: one armed phase.
        # The socket is not known yet: the connection classes below hand it
        # to the watchdog as soon as it exists (threat AGT-SLOW).
        watchdog.arm(None, remaining)
        _current.watchdog = watchdog
        try:
            response = self._pool.request(
                method,
                url,
                body=body,
                headers={**headers, "Accept-Encoding": "identity"},
                preload_content=False,
                decode_content=False,
                redirect=False,
                retries=urllib3.Retry(
                    total=connect_retries,
                    connect=connect_retries,
                    read=0,
                    redirect=0,
                    status=0,
                    other=0,
                ),
                timeout=urllib3.Timeout(
                    connect=min(connect_timeout, remaining),
                    read=min(read_timeout, remaining),
                ),
            )
        except BaseException as e:
            watchdog.stop()
            if not isinstance(e, Exception):
                raise
            reason = e.reason if isinstance(e, urllib3.exceptions.MaxRetryError) else e
            if watchdog.fired or isinstance(reason, urllib3.exceptions.TimeoutError):
                raise exceptions.SlowRetrievalError(f"{url}: {reason}") from e
            if isinstance(e, urllib3.exceptions.HTTPError | OSError):
                raise exceptions.DownloadError(f"{url}: {reason}") from e
            # A malformed response must not stop the agent.
            raise exceptions.DownloadError(f"{url}: {type(e).__name__}: {e}") from e
        finally:
            _current.watchdog = None
            deadline.spend(time.monotonic() - start)
        watchdog.disarm()
        result = AgentResponse(response, url, deadline, watchdog, read_timeout)
        if watchdog.fired:
            # http.client takes the end of the stream for the end of the head:
            # what it parsed before the socket was shut down is cut short.
            result.close(complete=False)
            raise exceptions.SlowRetrievalError(
                f"{url}: the response head was not received within the deadline"
            )
        return result


class AgentResponse:
    """A response whose body is read within its request's deadline.

    Attributes:
        status: The HTTP status code.
        reason: The status line's reason phrase.
        headers: The response headers.
        url: The URL requested.
    """

    def __init__(
        self,
        response: urllib3.BaseHTTPResponse,
        url: str,
        deadline: Deadline,
        watchdog: _Watchdog,
        read_timeout: float,
    ) -> None:
        self._response = response
        self._deadline = deadline
        self._watchdog = watchdog
        self._read_timeout = read_timeout
        self.status = response.status
        self.reason = response.reason
        self.headers = response.headers
        self.url = url

    def framed_length(self) -> int:
        """The body's length from ``Content-Length``; refuse any other framing.

        Threats TUF-ENDLESS-DATA and AGT-SLOW: without a ``Content-Length``
        the body runs until the server closes; with a ``Transfer-Encoding``
        (chunked) http.client reads chunk-size lines and any number of
        trailer lines inside one read and discards them, bytes that no cap
        counts and no per-read timeout sees. A server that cannot frame a
        static file or a small JSON answer is broken or hostile: the request
        fails (and is retried later) before a byte of the body is read.

        Raises:
            exceptions.DownloadError: Not framed by one well-formed
                ``Content-Length``.
        """
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None:
            raise exceptions.DownloadError(
                f"{self.url}: refusing a response with Transfer-Encoding {encoding!r}: only "
                "bodies with a Content-Length are read"
            )
        announced = self.headers.get("Content-Length")
        if announced is None:
            raise exceptions.DownloadError(
                f"{self.url}: refusing a response without Content-Length (its end would be "
                "the server's choice)"
            )
        value = announced.strip(" \t")
        if _CONTENT_LENGTH_RE.fullmatch(value) is None:
            raise exceptions.DownloadError(f"{self.url}: malformed Content-Length {announced!r}")
        return int(value)

    def read1(self, amount: int) -> bytes:
        """What one receive gives, at most ``amount`` bytes, within the deadline.

        Returns ``b""`` at the end of the body.

        Raises:
            exceptions.SlowRetrievalError: The deadline passed.
            exceptions.DownloadError: Any other failure.
        """
        remaining = self._deadline.remaining()
        # A gap timeout alone lets a trickling server run forever: cut the
        # socket timeout to what is left of the whole deadline. The socket
        # timeout bounds each receive; the watchdog bounds the read as a
        # whole, however many receives the layers below make for it.
        sock = getattr(self._response.connection, "sock", None)
        if sock is not None:
            sock.settimeout(min(self._read_timeout, remaining))
        start = time.monotonic()
        self._watchdog.arm(sock, remaining)
        try:
            # read1 returns what one receive gives, so the deadline is checked
            # between receives even when a read(amt) would wait for amt bytes.
            data = self._response.read1(amount, decode_content=False)
        except (urllib3.exceptions.TimeoutError, TimeoutError) as e:
            raise exceptions.SlowRetrievalError(f"{self.url}: {e}") from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            if self._watchdog.fired:
                raise exceptions.SlowRetrievalError(
                    f"{self.url}: not received within the deadline ({e})"
                ) from e
            raise exceptions.DownloadError(f"{self.url}: {e}") from e
        except Exception as e:  # a malformed response must not stop the agent
            raise exceptions.DownloadError(f"{self.url}: {type(e).__name__}: {e}") from e
        finally:
            self._watchdog.disarm()
            self._deadline.spend(time.monotonic() - start)
        if self._watchdog.fired:
            # The socket was shut down under the read, which may then look
            # like a clean end of the body.
            raise exceptions.SlowRetrievalError(f"{self.url}: not received within the deadline")
        return data

    def read_all(self, cap: int) -> bytes:
        """The whole body, framed by ``Content-Length`` and at most ``cap`` bytes.

        Closes the response. For small answers (check-ins, event posts).

        Raises:
            exceptions.DownloadLengthMismatchError: ``Content-Length`` above
                ``cap`` (refused before reading: threat TUF-ENDLESS-DATA).
            exceptions.SlowRetrievalError: The deadline passed.
            exceptions.DownloadError: Not framed by a ``Content-Length``, cut
                short, or any other failure.
        """
        complete = False
        try:
            length = self.framed_length()
            if length > cap:
                raise exceptions.DownloadLengthMismatchError(
                    f"{self.url}: the server announces {length} bytes, at most {cap} expected"
                )
            data = bytearray()
            while len(data) < length:
                chunk = self.read1(length - len(data))
                if not chunk:
                    raise exceptions.DownloadError(
                        f"{self.url}: the answer ended after {len(data)} of {length} bytes"
                    )
                data += chunk
            complete = True
            return bytes(data)
        finally:
            self.close(complete=complete)

    def close(self, *, complete: bool) -> None:
        """Give the connection back (``complete``: the body was read) or close it."""
        self._watchdog.stop()
        if not complete:
            # Unread bytes would poison the pooled connection: close it.
            self._response.close()
        self._response.release_conn()


class _Watchdog:
    """Shut a socket down when the phase it guards outlasts the time it was given.

    One per request, and one thread per watchdog, idle between reads:
    :meth:`arm` and :meth:`disarm` around every phase cost a lock, not a
    thread. A phase may be armed before its socket exists (connecting):
    :meth:`watch` hands the socket over, and shuts it down at once when the
    time ran out before.
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
        with self._cond:
            if self._stopped:
                return
            self._sock, self._due = sock, time.monotonic() + seconds
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pumpguard-http-deadline", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def watch(self, sock: socket.socket) -> None:
        """Guard ``sock`` for the rest of the armed phase."""
        with self._cond:
            if self.fired:
                _shutdown(sock)
            elif self._due is not None:
                self._sock = sock

    def disarm(self) -> None:
        """End the phase in time."""
        with self._cond:
            self._sock = self._due = None

    def stop(self) -> None:
        """End the watchdog and its thread."""
        with self._cond:
            self._stopped = True
            self._sock = self._due = None
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._due is None:
                    self._cond.wait()
                    continue
                left = self._due - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self.fired = True
                if self._sock is not None:
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


# The TCP connect, the TLS handshake, the request and the response head run
# inside urllib3 and http.client, one receive at a time, each with its own
# timeout: a server trickling the handshake or the headers would outlive any
# gap timeout. So the connection classes below give the watchdog of the
# request being opened (per thread) each socket as soon as it exists.
_current = threading.local()


def _watch(sock: socket.socket | None) -> None:
    watchdog: _Watchdog | None = getattr(_current, "watchdog", None)
    if watchdog is not None and sock is not None:
        watchdog.watch(sock)


class _HTTPConnection(urllib3.connection.HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)
        return sock

    # Same signature as urllib3's own override of http.client's method.
    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]
        _watch(self.sock)  # a pooled connection, reused
        return super().getresponse()


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)
        return sock

    # Same signature as urllib3's own override of http.client's method.
    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]
        _watch(self.sock)  # a pooled connection, reused
        return super().getresponse()


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def _check_url(url: str) -> None:
    # Metadata is signed, but mutual TLS credentials, the device's identity
    # and what it asks for are not: never over clear text beyond this machine.
    # The same check as the configured URLs, read by the parser that connects.
    try:
        check_server_url(url, "URL")
    except ConfigError as e:
        raise exceptions.DownloadError(str(e)) from e
