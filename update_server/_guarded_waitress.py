"""The waitress server and channel of ``pumpguard server run`` (see :mod:`update_server.serve`).

Deadlines for request heads, bodies and stalled readers, body limits by
route, bounded uploads, and eviction of the oldest waiting connection at
the cap instead of refusing to accept (threat SRV-DOS).

Waitress internals this depends on (waitress 3.x, pinned below 4): the
server's ``readable`` and ``handle_accept`` (replaced: waitress stops
accepting at ``connection_limit`` and sweeps idle channels in
``maintenance``, which ``Guard.tick`` replaces), ``HTTPChannel.received``,
``service``, ``readable``, ``send_continue``, ``handle_close`` and
``del_channel`` (extended), ``write_soon`` and ``cancel``, the channel
attributes ``request``, ``requests``, ``requests_lock``,
``total_outbufs_len``, ``will_close``, ``close_when_flushed``,
``sent_continue``, ``connected``, ``last_activity`` and ``socket``; the
server's ``add_task`` and ``pull_trigger``; the parser's
``headers_finished``, ``content_length``, ``chunked``,
``body_bytes_received``, ``expect_continue``, ``command`` and ``path``.
An upload's head is judged by :mod:`update_server._upload_head`.
"""

from __future__ import annotations

import errno
import json
import logging
import threading
import time
from contextlib import suppress
from socket import socket
from typing import Any, cast

from waitress.adjustments import Adjustments
from waitress.channel import ClientDisconnected, HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

from update_server import devices, releases
from update_server._upload_head import HeadCheck
from update_server.config import ServerConfig

__all__ = ["BODY_MIN_RATE", "SMALL_BODY", "Guard", "GuardedServer"]

logger = logging.getLogger("update_server.serve")

#: Bytes per second an upload's body must keep up, past ``body_timeout``.
BODY_MIN_RATE = 500
#: The largest body of any route but the release upload (a device's events).
SMALL_BODY = max(devices.MAX_ENROLL_BODY, devices.MAX_CHECKIN_BODY, devices.MAX_EVENTS_BODY)
#: Connections accepted per wake-up of the listening socket.
_ACCEPT_BATCH = 64
#: Seconds accepting pauses when EMFILE leaves nothing to drop (poll would
#: report the listening socket ready again at once: a busy loop).
_ACCEPT_PAUSE = 0.1
#: Seconds between two warnings about the same kind of overload.
_WARN_EVERY = 10.0
_RETRY_AFTER_OVERLOAD = 1


def _reply(status: str, code: str, message: str, retry_after: int | None = None) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    )
    if retry_after is not None:
        head += f"Retry-After: {retry_after}\r\n"
    return head.encode() + b"\r\n" + body


_OVERLOADED = _reply(
    "503 Service Unavailable",
    "overloaded",
    "the server has too many connections; retry later",
    _RETRY_AFTER_OVERLOAD,
)


class Guard:
    """Limits and bookkeeping shared by every listening socket of one server.

    Used from the asyncore thread only, except the large-body slots, which a
    worker thread frees when it has served the request (under a lock).
    """

    def __init__(self, config: ServerConfig, cap: int) -> None:
        self.header_timeout = config.header_timeout
        self.body_timeout = config.body_timeout
        self.send_timeout = config.send_timeout
        self.upload_limit = config.max_bundle_bytes
        self.cap = cap
        # Dropping a few at a time keeps a flood from sorting all channels
        # on every accept.
        self._batch = max(1, cap // 64)
        self.channels: set[_Channel] = set()  # open and not told to close
        self._large: set[_Channel] = set()
        self._max_large = config.max_large_bodies
        self._lock = threading.Lock()
        self._next_check = 0.0
        self._warned: dict[str, float] = {}

    def body_limit(self, method: str, path: str) -> int:
        if method == "POST" and path == releases.bp.url_prefix:
            return self.upload_limit
        return SMALL_BODY

    def take_large(self, channel: _Channel) -> bool:
        with self._lock:
            if len(self._large) >= self._max_large:
                return False
            self._large.add(channel)
            return True

    def holds_large(self, channel: _Channel) -> bool:
        return channel in self._large

    def release_large(self, channel: _Channel) -> None:
        with self._lock:
            self._large.discard(channel)

    def forget(self, channel: _Channel) -> None:
        self.channels.discard(channel)
        self.release_large(channel)

    def make_room(self) -> bool:
        """Whether a new connection may be kept, after dropping old ones if needed."""
        return len(self.channels) < self.cap or self.drop_oldest() > 0

    def drop_oldest(self) -> int:
        """Close the oldest connections that have no complete request; how many."""
        waiting = [c for c in self.channels if c.droppable()]
        waiting.sort(key=_Channel.waiting_since)
        for channel in waiting[: self._batch]:
            channel.evict()
        if waiting:
            self.warn("cap", f"{self.cap} connections open: dropping the oldest idle or unfinished")
        return min(len(waiting), self._batch)

    def tick(self) -> None:
        """Enforce the deadlines, about once a second."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + 1.0
        wall = time.time()
        for channel in list(self.channels):
            channel.check_deadlines(now, wall)

    def warn(self, kind: str, message: str) -> None:
        now = time.monotonic()
        if now >= self._warned.get(kind, 0.0):
            self._warned[kind] = now + _WARN_EVERY
            logger.warning("%s", message)


class _Channel(HTTPChannel):
    """A client connection with deadlines, body limits and eviction."""

    # waitress 3's lock over request and requests (types-waitress names an older one).
    requests_lock: threading.Lock

    def __init__(
        self, server: GuardedServer, sock: socket, addr: Any, adj: Adjustments, map: Any = None
    ):
        self._guard = server.guard
        # When it began waiting for the request head: the connection, or the
        # end of the previous request on it.
        self._since = time.monotonic()
        self._judged: HTTPRequestParser | None = None
        self._body_since = 0.0
        self._limit = SMALL_BODY
        # An upload whose head is being judged (reading paused), whether its
        # check is queued, and the last upload whose head passed.
        self._pending: HTTPRequestParser | None = None
        self._queued = False
        self._checked: HTTPRequestParser | None = None
        self._passed: HTTPRequestParser | None = None
        super().__init__(server, sock, addr, adj, map)
        self._guard.channels.add(self)

    def waiting_since(self) -> float:
        return self._since

    def droppable(self) -> bool:
        """No complete request, no answer pending, not an admitted upload."""
        return not (
            self.requests
            or self.total_outbufs_len
            or self.will_close
            or self.close_when_flushed
            or self._guard.holds_large(self)
            or self._pending is not None
        )

    def readable(self) -> bool:
        # Not while an upload's head is judged: its body waits in the client's
        # socket, and the poll loop does not watch this socket meanwhile.
        return self._pending is None and bool(super().readable())

    def received(self, data: bytes) -> bool:
        more = super().received(data)
        request = self.request  # the request not yet complete, if any
        if request is not None and request.headers_finished and not self.will_close:
            if request is not self._judged:
                self._judged = request
                self._body_since = time.monotonic()
                self._admit(request)
            elif request.body_bytes_received > self._limit:  # chunked: no length up front
                self._too_large()
        return more

    def _admit(self, request: HTTPRequestParser) -> None:
        path = str(getattr(request, "path", ""))
        self._limit = self._guard.body_limit(str(request.command), path)
        if self._limit > SMALL_BODY:
            # An upload: the app judges its head (token, role, product scope,
            # length) before one more byte of it is read, not after waitress
            # has spooled all of it (issue 19, finding 4; threat SRV-DOS).
            with self.requests_lock:  # service() reads these on a worker thread
                self._pending = request
                self._queued = False
                if not self.requests:  # else service() starts it: answers stay in order
                    self._check_head(request)
        elif request.content_length > self._limit:
            self._too_large()

    def _check_head(self, request: HTTPRequestParser) -> None:
        # Under requests_lock. On a worker thread: the check queries the
        # database. The dispatcher takes anything with service() and cancel().
        # Once per request, whichever path (the head's arrival, or service()
        # after the requests before it) gets here first: under load both can
        # (seen: a pipelined upload head answered 403 twice).
        self._queued = True
        if self._checked is request:
            return
        self._checked = request
        self.server.add_task(cast(Any, HeadCheck(self, request)))

    def _is_upload(self, request: HTTPRequestParser) -> bool:
        path = str(getattr(request, "path", ""))
        return self._guard.body_limit(str(request.command), path) > SMALL_BODY

    def send_continue(self) -> None:
        # Waitress sends 100 Continue as soon as a head is read; an upload's
        # waits until its head has passed (head_passed).
        request = self.request
        if request is not None and request is not self._passed and self._is_upload(request):
            return
        super().send_continue()

    def head_passed(self, request: HTTPRequestParser) -> None:
        """Worker thread: the app would read the body; resume reading it."""
        if (request.chunked or request.content_length > SMALL_BODY) and not self._guard.take_large(
            self
        ):
            self._guard.warn("large", "large request bodies arrive faster than they are served")
            self.head_refused(
                _reply(
                    "503 Service Unavailable",
                    "busy",
                    "the server is receiving as many uploads as it takes; retry later",
                    _RETRY_AFTER_OVERLOAD,
                )
            )
            return
        with self.requests_lock:  # as waitress's service() sends a deferred 100 Continue
            self._passed = request
            if self.connected and request.expect_continue and not self.sent_continue:
                self.send_continue()
            self._body_since = time.monotonic()  # the body's deadline starts now
            self._pending = None
        self.server.pull_trigger()  # wake the loop to watch the socket again

    def head_refused(self, reply: bytes | None) -> None:
        """Worker thread: answer ``reply`` (None: already written) and close, body unread."""
        if reply is not None:
            with suppress(ClientDisconnected):
                self.write_soon(reply)
        with self.requests_lock:
            self.close_when_flushed = True
        # The loop closes it once the answer is out (handle_write), and forgets it then.
        self.server.pull_trigger()

    def _too_large(self) -> None:
        self._refuse(
            _reply(
                "413 Request Entity Too Large",
                "payload_too_large",
                f"the request body exceeds the {self._limit} bytes this route takes",
            )
        )

    def check_deadlines(self, now: float, wall: float) -> None:
        if self.will_close or self.close_when_flushed or self._pending is not None:
            return  # closing, or an upload's head being judged: the app's time
        if self.total_outbufs_len:
            # An answer is waiting for the client to read it (waitress sets
            # last_activity whenever bytes are sent). The wait for the next
            # request head begins when it is read.
            self._since = now
            if wall - self.last_activity > self._guard.send_timeout:
                self._drop()
            return
        if self.requests:
            return  # complete and being served: the app's time, not the client's
        request = self.request
        if request is None or not request.headers_finished:
            if now - self._since > self._guard.header_timeout:
                if request is None:
                    self._drop()  # idle: nothing to answer
                else:
                    self._refuse(
                        _reply(
                            "408 Request Timeout",
                            "request_timeout",
                            "the request head did not arrive within"
                            f" {self._guard.header_timeout:g} s",
                        )
                    )
        else:
            allowed = self._guard.body_timeout
            if self._limit > SMALL_BODY:
                # An upload: as long as it keeps up the minimum rate. Not for
                # the small bodies, which a client could otherwise send all
                # but the last byte of at once and hold for minutes.
                allowed += request.body_bytes_received / BODY_MIN_RATE
            if now - self._body_since > allowed:
                self._refuse(
                    _reply(
                        "408 Request Timeout",
                        "request_timeout",
                        f"the request body did not arrive within {allowed:.0f} s",
                    )
                )

    def evict(self) -> None:
        if self.request is None:
            self._drop()
        else:
            self._refuse(_OVERLOADED)

    def _refuse(self, reply: bytes) -> None:
        """Answer ``reply`` (best effort, never blocking) and close."""
        if not self.requests and not self.total_outbufs_len and self.socket is not None:
            # A few hundred bytes into an empty send buffer of a non-blocking
            # socket; a client that does not read them loses nothing it needs.
            with suppress(OSError):
                self.socket.send(reply)
        self._drop()

    def _drop(self) -> None:
        # Closed by the loop's next pass (handle_write), as waitress closes.
        self.will_close = True
        self._guard.forget(self)

    def service(self) -> None:
        try:
            super().service()
        finally:
            # Worker thread: a float assignment and a locked set operation.
            self._since = time.monotonic()
            self._guard.release_large(self)
            with self.requests_lock:
                # An upload's head that arrived behind the requests just served.
                if (
                    self._pending is not None
                    and not self._queued
                    and not self.requests
                    and not (self.will_close or self.close_when_flushed)
                ):
                    self._check_head(self._pending)

    def handle_close(self) -> None:
        self._guard.forget(self)
        super().handle_close()

    def del_channel(self, map: Any = None) -> None:
        self._guard.forget(self)
        super().del_channel(map)


class GuardedServer(TcpWSGIServer):
    """A listening socket that never stops accepting and enforces the deadlines."""

    channel_class = _Channel

    def __init__(
        self,
        app: Any,
        socket_map: dict[int, Any],
        *,
        guard: Guard,
        dispatcher: ThreadedTaskDispatcher,
        adj: Adjustments,
        sockinfo: Any,
    ) -> None:
        self.guard = guard
        self._socket_map = socket_map
        self._paused_until = 0.0
        super().__init__(app, socket_map, dispatcher=dispatcher, adj=adj, sockinfo=sockinfo)

    def readable(self) -> bool:
        # Replaces waitress's, which stops accepting at connection_limit, so
        # new clients would queue behind the ones holding the connections.
        self.guard.tick()
        return bool(self.accepting) and time.monotonic() >= self._paused_until

    def handle_accept(self) -> None:
        # Up to a batch per wake-up, not one: under a flood of new connections
        # a pump's connection waits in the backlog behind every one queued
        # before it, and each pass of the loop costs a look at every channel.
        for _ in range(_ACCEPT_BATCH):
            if not self._accept_one():
                return

    def _accept_one(self) -> bool:
        """Accept one connection; False when there is none (or no room) now."""
        try:
            pair = self.accept()
        except OSError as e:
            # Out of descriptors (EMFILE, ENFILE) or kernel memory: the client
            # stays in the backlog while the oldest waiting ones are dropped.
            # Waitress would log it and close the listening socket.
            if e.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                logger.warning("accept failed: %s", e)
            self.guard.warn("emfile", f"accepting a connection failed: {e.strerror}")
            if not self.guard.drop_oldest():
                self._paused_until = time.monotonic() + _ACCEPT_PAUSE
            return False
        if pair is None:
            return False
        conn, addr = pair
        if not self.guard.make_room():
            # Every connection has a complete request in hand: say so at once.
            with suppress(OSError):
                conn.send(_OVERLOADED)
            conn.close()
            return True
        try:
            self.set_socket_options(conn)
        except OSError:
            conn.close()
            return True
        _Channel(self, conn, addr, self.adj, map=self._socket_map)
        return True
