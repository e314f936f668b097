"""Database engine and sessions for the app (``init_app``), and migrations."""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import suppress
from pathlib import Path
from typing import Any

import psycopg
from flask import Flask, current_app, g
from psycopg import RawCursor
from psycopg_pool import ConnectionPool
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "DEFAULT_POOL_SIZE",
    "DEVICE_POOL_NAME",
    "DevicePool",
    "device_cursor",
    "dispose",
    "engine_for",
    "get_session",
    "init_app",
    "is_unavailable",
    "migrate",
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


#: Connections each pool of a process holds by default (ServerConfig.db_pool_size).
DEFAULT_POOL_SIZE = 10

#: ``application_name`` of the check-ins' connections (pg_stat_activity), unless
#: the database URL names one.
DEVICE_POOL_NAME = "pumpguard-checkin"


def engine_for(
    url: str, *, pool_size: int = DEFAULT_POOL_SIZE, pool_timeout: float = 30.0
) -> Engine:
    """An engine with the settings pumpguard relies on for each backend.

    The pool holds at most ``pool_size`` connections, with no overflow: a
    burst of requests waits up to ``pool_timeout`` seconds for one and then
    fails with SQLAlchemy's pool ``TimeoutError`` (the app answers 503), so a
    flood never opens more database connections than configured (threat
    SRV-DOS).
    """
    pool = {"pool_size": pool_size, "max_overflow": 0, "pool_timeout": pool_timeout}
    if url.startswith("sqlite"):
        _private_sqlite_file(url)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **pool
        )

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
    # holds at most one connection of this pool at a time, and the check-ins'
    # connections come from their own pool (DevicePool).
    return create_engine(url, pool_recycle=300, **pool)


def _private_sqlite_file(url: str) -> None:
    """Create the SQLite database file 0600, or make an existing one 0600.

    SQLite creates the ``-wal`` and ``-shm`` files with the mode of the
    database file, so this keeps all three readable by the server's user
    only (the database holds token hashes, device keys and the audit log);
    ones left wider by an older version are narrowed too.
    """
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.parent.is_dir():
        return  # SQLite reports the missing folder when it connects.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        with suppress(FileNotFoundError):
            path.with_name(path.name + suffix).chmod(0o600)


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (Alembic ``upgrade head``)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")


def init_app(app: Flask) -> None:
    """Attach an engine, a per-request session and the check-ins' pool to ``app``."""
    config = app.config["PUMPGUARD"]
    engine = engine_for(
        config.database_url, pool_size=config.db_pool_size, pool_timeout=config.db_pool_timeout
    )
    app.extensions["pumpguard.db"] = sessionmaker(engine, expire_on_commit=False)
    app.extensions["pumpguard.engine"] = engine
    app.extensions["pumpguard.device_pool"] = None
    if engine.dialect.name == "postgresql":
        # The engine's connection settings (URL, query options, type
        # adapters), for device_cursor()'s own connections.
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        app.extensions["pumpguard.device_pool"] = DevicePool(
            str(args[0]) if args else "",
            dict(kwargs),
            size=config.db_pool_size,
            timeout=config.db_pool_timeout,
        )

    @app.teardown_appcontext
    def _close(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()
        cursor: RawCursor[Any] | None = g.pop("db_device_cursor", None)
        if cursor is not None:
            pool: DevicePool = app.extensions["pumpguard.device_pool"]
            pool.give_back(cursor.connection)


def dispose(app: Flask) -> None:
    """Close ``app``'s pooled connections, the check-ins' included."""
    app.extensions["pumpguard.engine"].dispose()
    pool: DevicePool | None = app.extensions["pumpguard.device_pool"]
    if pool is not None:
        pool.close()


def get_session() -> Session:
    """The current request's session."""
    from flask import current_app

    if "db_session" not in g:
        g.db_session = current_app.extensions["pumpguard.db"]()
    session: Session = g.db_session
    return session


def device_cursor() -> RawCursor[Any] | None:
    """This request's autocommit psycopg cursor on PostgreSQL; None on SQLite.

    The signed device requests (check-ins) run every poll interval for every
    pump, so on PostgreSQL they bypass the session, SQLAlchemy's execution
    layer and its pool: plain psycopg statements (``$n`` placeholders;
    psycopg prepares a statement after a few uses of a connection) on a
    connection of the process's :class:`DevicePool`, in autocommit mode,
    where each statement is its own transaction and needs no ``BEGIN`` or
    ``COMMIT`` round trip (bench/server_load.py). A caller that writes must
    therefore write everything a request changes in one statement; see
    ``update_server.devices.checkin``.

    The connection is taken from the pool at the first call of a request
    (later calls return the same cursor) and given back when the request
    ends, so a request holds at most one and the process at most the pool's
    size, however many clients connect (threat SRV-DOS). Call it only when
    the request needs the database: ``device_auth`` first does every check
    that needs none.

    Raises:
        psycopg_pool.PoolTimeout: No connection within the pool's timeout
            (a psycopg ``OperationalError``: the app answers 503 with
            ``Retry-After``). A connection that broke (the database
            restarted) fails the request the same way and is replaced.
    """
    pool: DevicePool | None = current_app.extensions["pumpguard.device_pool"]
    if pool is None:
        return None
    cursor: RawCursor[Any] | None = g.get("db_device_cursor")
    if cursor is None:
        cursor = g.db_device_cursor = RawCursor(pool.take())
    return cursor


class DevicePool:
    """The bounded pool of autocommit connections behind :func:`device_cursor`.

    At most ``size`` connections, opened when needed (none before the first
    check-in), closed after ten idle minutes; a request waits at most
    ``timeout`` seconds for one. The pool is made in the process that first
    uses it, so a worker forked from a preloaded app (gunicorn ``--preload``)
    never shares its parent's sockets.

    Args:
        conninfo: libpq connection string (may be empty).
        kwargs: Further connection parameters (SQLAlchemy's, for the same
            database and type adapters).
        size: Most connections open at once.
        timeout: Seconds :meth:`take` waits for a connection.
    """

    def __init__(self, conninfo: str, kwargs: dict[str, Any], *, size: int, timeout: float) -> None:
        self._conninfo = conninfo
        self._kwargs = {"application_name": DEVICE_POOL_NAME, **kwargs, "autocommit": True}
        self.size = size
        self.timeout = timeout
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._pid = 0
        # A forked child's copy of its parent's pool: kept, never used or
        # closed (its worker threads exist only in the parent).
        self._inherited: list[ConnectionPool[psycopg.Connection[Any]]] = []
        self._lock = threading.Lock()

    def _current(self) -> ConnectionPool[psycopg.Connection[Any]]:
        pool, pid = self._pool, os.getpid()
        if pool is not None and self._pid == pid:
            return pool
        with self._lock:
            if self._pool is None or self._pid != pid:
                if self._pool is not None:
                    self._inherited.append(self._pool)
                self._pool = ConnectionPool(
                    self._conninfo,
                    kwargs=self._kwargs,
                    min_size=0,
                    max_size=self.size,
                    timeout=self.timeout,
                    name=DEVICE_POOL_NAME,
                    open=True,
                )
                self._pid = pid
            return self._pool

    def take(self) -> psycopg.Connection[Any]:
        """A connection of the pool; give it back with :meth:`give_back`.

        Raises:
            psycopg_pool.PoolTimeout: None free within the timeout.
        """
        return self._current().getconn()

    def give_back(self, conn: psycopg.Connection[Any]) -> None:
        """Return ``conn``; one that broke is closed and replaced by the pool."""
        pool = self._pool
        if pool is not None and self._pid == os.getpid():
            pool.putconn(conn)
        else:  # closed meanwhile (dispose) or another process's
            with suppress(psycopg.Error):
                conn.close()

    def close(self) -> None:
        """Close every connection; the next :meth:`take` opens a new pool."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.close()
