"""An upload judged from its head alone, on waitress's worker threads.

Waitress receives a request's whole body before the app sees it, so under
``pumpguard server run`` a token of another product used to be refused only
after its upload (up to ``max_bundle_bytes``) had been spooled (issue 19,
finding 4; threat SRV-DOS). The guarded channel
(:mod:`update_server._guarded_waitress`) stops reading an upload once its
head is in and queues a :class:`HeadCheck`: the app is called with that head,
an empty body and ``environ[releases.HEAD_ONLY]``, and
:func:`update_server.releases.publish_release` answers 204 once every check
made before the body (token, role, query, media type, product scope,
length) has passed. Any other answer is the client's, and the connection
closes without reading the body; on 204 nothing is sent and reading resumes.

The check runs on a worker thread because it queries the database: the
asyncore loop that serves every other connection never waits for it.

Waitress internals this depends on (waitress 3.x): ``WSGITask`` (its
``get_environment``, ``write``, ``service``, ``status``, ``wrote_header``
and ``set_close_on_finish``), the parser's ``path``, ``command``,
``headers``, ``version`` and ``get_body_stream``, ``ClientDisconnected``,
and that the task dispatcher calls ``service`` and, at shutdown, ``cancel``
on what it is given.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any, cast

from waitress.channel import ClientDisconnected
from waitress.parser import HTTPRequestParser
from waitress.task import WSGITask

from update_server import releases

if TYPE_CHECKING:
    from update_server._guarded_waitress import _Channel

__all__ = ["HeadCheck"]

logger = logging.getLogger("update_server.serve")

#: What the app answers a head it lets through (releases.publish_release).
_GO_ON = "204"


class _HeadOnly:
    """The request as the head check sees it: its head, and no body.

    The real body stream is not touched: the asyncore thread owns it (waitress
    creates its buffer lazily, which must not happen on this thread).
    """

    def __init__(self, request: HTTPRequestParser) -> None:
        self._request = request

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)

    @property
    def headers(self) -> dict[str, str]:
        headers = dict(self._request.headers)
        if self._request.chunked:
            # Waitress drops the header once it has decoded the chunks (and
            # sets the length it counted); the app refuses a chunked upload
            # (411), so it must see that this one is.
            headers["TRANSFER_ENCODING"] = "chunked"
        return headers

    @staticmethod
    def get_body_stream() -> io.BytesIO:
        return io.BytesIO()


class _HeadTask(WSGITask):
    """Waitress's WSGI task on the head alone; the go-on answer is not sent."""

    def get_environment(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environment()
        # Not forgeable: a client's headers become HTTP_* keys only.
        environ[releases.HEAD_ONLY] = True
        return environ

    def write(self, data: bytes) -> None:
        if self.status.startswith(_GO_ON):
            return  # nothing reaches the client; the full request answers it
        if not self.wrote_header:
            # The body stays unread in the client's socket: the connection
            # cannot be used for another request.
            self.set_close_on_finish()
        super().write(data)


class HeadCheck:
    """A task for waitress's thread pool: judge ``request`` from its head."""

    def __init__(self, channel: _Channel, request: HTTPRequestParser) -> None:
        self._channel = channel
        self._request = request

    def service(self) -> None:
        """Call the app; tell the channel whether the body may be read."""
        # The task reads only what the parser's head gave (see _HeadOnly).
        task = _HeadTask(self._channel, cast(Any, _HeadOnly(self._request)))
        try:
            task.service()
        except ClientDisconnected:
            self._channel.head_refused(None)
            return
        except Exception:
            logger.exception("judging an upload from its head failed")
            self._channel.head_refused(None if task.wrote_header else _INTERNAL_ERROR)
            return
        if task.status.startswith(_GO_ON):
            self._channel.head_passed(self._request)
        else:
            self._channel.head_refused(None)  # the task wrote the answer

    def cancel(self) -> None:
        """The server is stopping before the check ran."""
        self._channel.cancel()


_ERROR_BODY = b'{"error": {"code": "internal_error", "message": "internal server error"}}'
_INTERNAL_ERROR = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_ERROR_BODY), _ERROR_BODY)
)
