"""``pumpguard server run``: the app on waitress, guarded against slow and abundant clients.

Waitress reads each request, head and body, in one asyncore loop and hands
only complete requests to a bounded pool of threads, so a slow client costs
a socket, not a thread. What waitress lacks, this module adds (threat
SRV-DOS; nginx ``client_header_timeout`` and Apache ``mod_reqtimeout`` do the
same):

* a request head must be complete within ``header_timeout`` of the
  connection (or of the previous answer on it), however it dribbles in;
* a body must arrive within ``body_timeout``, an upload's within
  ``body_timeout`` plus one second per :data:`BODY_MIN_RATE` bytes received;
  both answer 408 and close;
* a client that stops reading its answer is closed after ``send_timeout``;
* a body larger than the route takes is refused at its head (413): only the
  upload route takes more than :data:`SMALL_BODY`;
* an upload is judged from its head before its body is read: the app checks
  the token, its role and product scope, the query, the media type and the
  length on a worker thread while the channel stops reading, and answers a
  refusal at once (issue 19, finding 4); at most ``max_large_bodies`` bodies
  it let through are received at once (503 otherwise), as waitress spools
  every body to disk before the app sees it;
* at the connection cap the server keeps accepting: it closes the oldest
  connections that have no complete request (a half-sent request is the
  cheapest thing to drop), so a new client is always served; the cap stays
  below the open-file limit, which is raised to its hard limit first, and
  an accept that still meets EMFILE drops the oldest instead of closing the
  listening socket (what waitress does with an accept error).

The connection handling is :mod:`update_server._guarded_waitress`.
"""

from __future__ import annotations

import logging
import resource
import signal
import sys
from collections.abc import Callable
from contextlib import suppress
from types import FrameType
from typing import Any

from flask import Flask
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.task import ThreadedTaskDispatcher

from pumpguard.errors import ConfigError
from update_server import db
from update_server._guarded_waitress import BODY_MIN_RATE, SMALL_BODY, Guard, GuardedServer
from update_server.config import ServerConfig

__all__ = ["BODY_MIN_RATE", "SMALL_BODY", "connection_cap", "raise_open_file_limit", "serve"]

logger = logging.getLogger(__name__)

#: Longest request head: device requests send a few hundred bytes. Each
#: unfinished head is held in memory, so this times the cap bounds them.
_MAX_HEAD = 32 * 1024


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else target
    with suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def connection_cap(config: ServerConfig, open_files: int) -> int:
    """The client connections to keep open under an open-file limit.

    The descriptors the process needs besides its clients are reserved
    first: both database pools (three per connection on SQLite: the
    database, its WAL and its shared memory), a few per worker thread (a
    file it serves, an upload and its unpacked bundle) and one spool file per
    large body. Each client may hold two (its socket, and a temporary file
    for an answer over 1 MiB), so half of the rest is the cap.

    Raises:
        ConfigError: The limit leaves no room for clients.
    """
    reserved = 32 + 2 * 3 * config.db_pool_size + 8 * config.threads + config.max_large_bodies
    cap = min(config.connection_limit, (open_files - reserved) // 2)
    if cap < 8:
        raise ConfigError(
            f"the open-file limit ({open_files}) leaves no room for client connections:"
            f" the server needs {reserved} descriptors besides them (raise `ulimit -n`,"
            " or lower threads or db_pool_size)"
        )
    return cap


def serve(
    app: Flask, config: ServerConfig, host: str, port: int, ready: Callable[[str, int], None]
) -> None:
    """Serve ``app`` on ``host:port`` until SIGTERM or SIGINT, then shut down cleanly.

    Args:
        app: The server app.
        config: Its configuration (threads, connection cap, timeouts).
        host: Address to listen on.
        port: Port (0 for any free one).
        ready: Called with the address and port once listening.

    Raises:
        ConfigError: The address cannot be listened on, or the open-file
            limit leaves no room for clients.
    """
    open_files = raise_open_file_limit()
    cap = connection_cap(config, open_files)
    if cap < config.connection_limit:
        logger.warning(
            "the open-file limit (%d) keeps client connections at %d, below connection_limit",
            open_files,
            cap,
        )
    adj = Adjustments(
        host=host,
        port=port,
        threads=config.threads,
        connection_limit=cap,
        # _Server.readable replaces waitress's sweep of idle channels
        # (channel_timeout) with _Guard.tick.
        # poll(): select() cannot watch descriptors above 1023.
        asyncore_use_poll=True,
        asyncore_loop_timeout=1,
        max_request_header_size=_MAX_HEAD,
        # Bodies are bounded by the channel (by route) and, for uploads, by
        # the app's head check (its JSON 413), which waitress's own bound
        # would pre-empt with a plain-text 413 before the app sees the head.
        max_request_body_size=sys.maxsize,
        # Bodies up to SMALL_BODY stay in memory; larger ones (uploads) spool.
        inbuf_overflow=SMALL_BODY + 1,
        backlog=1024,
        ident="pumpguard",
        expose_tracebacks=False,
        clear_untrusted_proxy_headers=True,
    )
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(config.threads)
    guard = Guard(config, cap)
    socket_map: dict[int, Any] = {}
    try:
        servers = [
            GuardedServer(
                app, socket_map, guard=guard, dispatcher=dispatcher, adj=adj, sockinfo=info
            )
            for info in adj.listen
        ]
    except OSError as e:
        dispatcher.shutdown()
        wasyncore.close_all(socket_map)
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    bound_host, bound_port = servers[0].getsockname()
    ready(str(bound_host), int(bound_port))

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        wasyncore.loop(timeout=1.0, use_poll=True, map=socket_map)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        dispatcher.shutdown(cancel_pending=True, timeout=5)
        wasyncore.close_all(socket_map)
        scheduler = app.extensions.get("pumpguard.refresher")
        if scheduler is not None:
            scheduler.stop()
        db.dispose(app)
