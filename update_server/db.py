"""Database engine and sessions for the app (``init_app``), and migrations."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
from flask import Flask, current_app, g
from psycopg import RawCursor
from psycopg.pq import TransactionStatus
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "DeviceConnections",
    "device_cursor",
    "dispose",
    "engine_for",
    "get_session",
    "init_app",
    "is_unavailable",
    "migrate",
    "session_scope",
]

_MIGRATIONS = Path(__file__).parent / "migrations"

# SQLite's primary result codes for a database that is busy, cannot be opened
# or written right now, or ran out of room: conditions a retry can outlast.
# Everything else SQLite calls an "operational error" (SQLITE_ERROR: no such
# table or column, a syntax error) is a bug or a broken schema.
_SQLITE_UNAVAILABLE = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
    }
)


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database is unavailable, not that the server is wrong.

    True for PostgreSQL's operational errors (no connection, the connection
    broke, the server is shutting down, out of resources, a statement
    cancelled) and for SQLite's busy, locked, I/O, full and cannot-open
    errors. False for everything else, including SQLite's "no such table",
    which its driver also raises as an operational error: a schema or query
    error must surface as a 500 and a traceback, not as a 503 that asks the
    client to retry what will never work.
    """
    cause = error.orig if isinstance(error, DBAPIError) else error
    if isinstance(cause, psycopg.OperationalError):
        return True
    if isinstance(cause, sqlite3.OperationalError):
        code = getattr(cause, "sqlite_errorcode", None)
        # Extended codes (SQLITE_IOERR_WRITE ...) carry the primary in the low byte.
        return code is not None and code & 0xFF in _SQLITE_UNAVAILABLE
    return False


def engine_for(url: str) -> Engine:
    """An engine with the settings pumpguard relies on for each backend."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets pumps' reads proceed during a write; foreign keys are
            # off by default in SQLite.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        return engine
    # No pre-ping: it costs a round trip on every request (bench/server_load.py);
    # recycling connections bounds how stale one can get instead. Each request
    # holds at most one pooled connection (device_cursor() keeps its own, one
    # per thread), so 10 + 10 covers a worker with up to 20 gunicorn threads
    # (docs/deployment.md).
    return create_engine(url, pool_recycle=300, pool_size=10, max_overflow=10)


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (Alembic ``upgrade head``)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")


def init_app(app: Flask) -> None:
    """Attach an engine and a per-request session to ``app``."""
    engine = engine_for(app.config["PUMPGUARD"].database_url)
    app.extensions["pumpguard.db"] = sessionmaker(engine, expire_on_commit=False)
    app.extensions["pumpguard.engine"] = engine
    app.extensions["pumpguard.device_connection"] = None
    if engine.dialect.name == "postgresql":
        # The engine's connection settings (URL, query options, type
        # adapters), for device_cursor()'s own connections.
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        app.extensions["pumpguard.device_connection"] = DeviceConnections(list(args), dict(kwargs))

    @app.teardown_appcontext
    def _close(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()
        if g.pop("db_device_cursor", None) is not None:
            connections: DeviceConnections = app.extensions["pumpguard.device_connection"]
            connections.release()


def dispose(app: Flask) -> None:
    """Close ``app``'s pooled connections and every device connection."""
    app.extensions["pumpguard.engine"].dispose()
    connections: DeviceConnections | None = app.extensions["pumpguard.device_connection"]
    if connections is not None:
        connections.close_all()


def get_session() -> Session:
    """The current request's session."""
    from flask import current_app

    if "db_session" not in g:
        g.db_session = current_app.extensions["pumpguard.db"]()
    session: Session = g.db_session
    return session


def device_cursor() -> RawCursor[Any] | None:
    """This thread's autocommit psycopg cursor on PostgreSQL; None on SQLite.

    The signed device requests (check-ins) run every poll interval for every
    pump, so on PostgreSQL they bypass the session, SQLAlchemy's execution
    layer and its pool: plain psycopg statements (``$n`` placeholders;
    psycopg prepares a statement after a few uses) on a connection of their
    own per server thread, opened on first use and kept in autocommit mode,
    where each statement is its own transaction and needs no ``BEGIN`` or
    ``COMMIT`` round trip (bench/server_load.py). A caller that writes must
    therefore write everything a request changes in one statement; see
    ``update_server.devices.checkin``.

    A connection that broke (the database restarted, the network failed) is
    closed when the request ends, and the thread's next request opens a new
    one; the failing request gets the error.
    """
    connections: DeviceConnections | None = current_app.extensions["pumpguard.device_connection"]
    if connections is None:
        return None
    cursor = connections.cursor()
    g.db_device_cursor = cursor
    return cursor


class DeviceConnections:
    """The autocommit connections of :func:`device_cursor`, one per thread.

    All are tracked, so :func:`dispose` closes them whichever thread opened
    them.
    """

    def __init__(self, connect_args: list[Any], connect_kwargs: dict[str, Any]) -> None:
        self._connect_args = connect_args
        self._connect_kwargs = connect_kwargs
        self._local = threading.local()
        self._open: set[psycopg.Connection[Any]] = set()
        self._lock = threading.Lock()

    def current(self) -> RawCursor[Any] | None:
        """This thread's cursor if it has one open, else None."""
        cursor: RawCursor[Any] | None = getattr(self._local, "cursor", None)
        if cursor is None or self._local.pid != os.getpid():
            return None
        if cursor.connection.closed:  # by dispose(), or by psycopg when it broke
            self._local.cursor = None
            self._close(cursor.connection)
            return None
        return cursor

    def cursor(self) -> RawCursor[Any]:
        """This thread's cursor, on a new connection if it has none open."""
        cursor = self.current()
        if cursor is None:
            # First use in this thread, closed by dispose(), or a forked child
            # (gunicorn --preload) that must not share its parent's socket.
            conn = psycopg.connect(*self._connect_args, autocommit=True, **self._connect_kwargs)
            with self._lock:
                self._open.add(conn)
            cursor = self._local.cursor = RawCursor(conn)
            self._local.pid = os.getpid()
        return cursor

    def release(self) -> None:
        """At the end of a request: close this thread's connection if it is unusable."""
        cursor = self.current()
        if cursor is None:
            return
        conn = cursor.connection
        if conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
            self._local.cursor = None
            self._close(conn)

    def close_all(self) -> None:
        """Close every thread's connection; a thread's next request opens a new one."""
        with self._lock:
            conns, self._open = self._open, set()
        for conn in conns:
            with suppress(psycopg.Error):
                conn.close()

    def _close(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            self._open.discard(conn)
        with suppress(psycopg.Error):
            conn.close()


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session outside a request (CLI, scheduler): commit or roll back."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
