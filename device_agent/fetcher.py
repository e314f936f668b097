"""The agent's TUF fetcher: deadlines, length caps, Range resume, mutual TLS.

ngclient uses :class:`AgentFetcher` through
:class:`tuf.ngclient.FetcherInterface` for metadata; the download module uses
:meth:`AgentFetcher.stream` to write a firmware image straight into a slot,
resuming with HTTP Range after an interruption. Requests go through the
agent's one HTTP client, :class:`device_agent.httpclient.AgentHttp`, shared
with check-ins and event posts: its connection pool, TLS settings, URL check
(plain ``http://`` only to loopback), deadline watchdog and framing checks.

Defences (TUF spec, section 1.5.2, "Attacks and weaknesses"):

* *Slow retrieval* (threat AGT-SLOW): each file has one
  :class:`~device_agent.httpclient.Deadline` on the time spent waiting for
  the server (connect, headers and every read), not only a gap timeout: a
  metadata file :attr:`AgentFetcher.deadline`, a firmware file
  :meth:`AgentFetcher.file_deadline` of its length. Time the caller spends
  between chunks (writing to the slot, rate limiting) does not count: the
  deadline is on the server, not on the pump.
* *Endless data* (threat TUF-ENDLESS-DATA): only bodies framed by a
  ``Content-Length`` are read, and no ``Transfer-Encoding``
  (:meth:`~device_agent.httpclient.AgentResponse.framed_length`).
  :meth:`AgentFetcher.stream` refuses an announced length above what TUF
  signed, never yields more than the caller's ``max_length``; ngclient caps
  metadata through ``download_bytes``.
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

import logging
import re
from collections.abc import Iterator
from pathlib import Path

from tuf.api import exceptions
from tuf.ngclient import FetcherInterface

from device_agent.httpclient import AgentHttp, AgentResponse, Deadline

__all__ = ["DEFAULT_CHUNK_SIZE", "AgentFetcher"]

logger = logging.getLogger(__name__)

#: Largest piece read from the network at once, and so the largest chunk a
#: caller holds in memory.
DEFAULT_CHUNK_SIZE = 1024 * 1024

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
        http: The agent's shared HTTP client (connection pool and TLS
            settings); one of its own from ``ca_file``, ``client_cert`` and
            ``client_key`` when ``None``.

    Raises:
        ValueError: An option is out of range, only one of ``client_cert``
            and ``client_key`` is given, or TLS files are given with ``http``.
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
        http: AgentHttp | None = None,
    ) -> None:
        if min(connect_timeout, read_timeout, deadline, min_rate) <= 0 or chunk_size <= 0:
            raise ValueError("timeouts, deadline, min_rate and chunk_size must be positive")
        if http is not None and (ca_file or client_cert or client_key):
            raise ValueError("the TLS settings of a shared http client are its own")
        self.user_agent = f"pumpguard-agent/{version}"
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.deadline = deadline
        self.min_rate = min_rate
        self.chunk_size = chunk_size
        self.http = http or AgentHttp(
            ca_file=ca_file, client_cert=client_cert, client_key=client_key
        )

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
            response = self._request(url, {}, Deadline(self.deadline, url))
            try:
                if response.status != 200:
                    raise exceptions.DownloadHTTPError(
                        f"{url}: HTTP status {response.status}", response.status
                    )
                response.framed_length()
            except BaseException:
                response.close(complete=False)
                raise
        except exceptions.DownloadError:
            raise
        except Exception as e:  # a malformed response must not stop the agent
            raise exceptions.DownloadError(f"{url}: {type(e).__name__}: {e}") from e
        return _download_errors_only(self._body(response, expected=None), url)

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
        response = self._request(url, headers, Deadline(self.file_deadline(max_length), url))
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
            announced = response.framed_length()
            if response.status == 200:
                total = announced
            _check_announced(announced, total, start, max_length, skip, url)
        except BaseException:
            response.close(complete=False)
            raise
        yield from self._body(response, expected=max_length - start, skip=skip)

    # ------------------------------------------------------------ internals
    def _request(self, url: str, headers: dict[str, str], deadline: Deadline) -> AgentResponse:
        # Connection errors are retried twice (cheap, and inside the deadline);
        # reads are not (a half-read body is resumed by the caller), and
        # redirects are refused: a TUF repository has fixed URLs.
        return self.http.open(
            "GET",
            url,
            deadline=deadline,
            headers={"User-Agent": self.user_agent, **headers},
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            connect_retries=2,
        )

    def _body(
        self, response: AgentResponse, *, expected: int | None, skip: int = 0
    ) -> Iterator[bytes]:
        """Yield the body; ``expected`` counts the bytes after the ``skip`` ones.

        The response's framing was checked (:meth:`AgentResponse.framed_length`)
        before; every read is within the request's deadline.
        """
        url = response.url
        complete = False
        try:
            received = 0
            while True:
                chunk = response.read1(self.chunk_size)
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
            response.close(complete=complete)


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
