"""Database engine and sessions for the app (``init_app``), and migrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from flask import Flask, current_app, g
from psycopg import RawCursor
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import PoolProxiedConnection

__all__ = [
    "device_cursor",
    "engine_for",
    "get_session",
    "init_app",
    "migrate",
    "session_scope",
]

_MIGRATIONS = Path(__file__).parent / "migrations"


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
    # holds at most two connections (its session and, for signed device
    # requests, device_cursor()), so 10 + 10 covers a worker with up to 10
    # gunicorn threads (docs/deployment.md).
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
    app.extensions["pumpguard.postgresql"] = engine.dialect.name == "postgresql"

    @app.teardown_appcontext
    def _close(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()
        raw: PoolProxiedConnection | None = g.pop("db_device_connection", None)
        if raw is not None:
            _return_device_connection(raw)


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
    pump, so on PostgreSQL they bypass the session and SQLAlchemy's execution
    layer: plain psycopg statements (``$n`` placeholders; psycopg prepares a
    statement after a few uses) on a pooled connection in autocommit mode,
    where each statement is its own transaction and needs no ``BEGIN`` or
    ``COMMIT`` round trip (bench/server_load.py). A caller that writes must
    therefore write everything a request changes in one statement; see
    ``update_server.devices.checkin``. The cursor is kept with its connection
    (making one costs more than a query); the connection goes back to the
    pool, in its usual transactional mode, when the request ends.
    """
    raw: PoolProxiedConnection | None = g.get("db_device_connection")
    if raw is None:
        if not current_app.extensions["pumpguard.postgresql"]:
            return None
        raw = current_app.extensions["pumpguard.engine"].raw_connection()
        try:
            conn = raw.driver_connection
            conn.autocommit = True  # type: ignore[union-attr]
            kept = raw.info.get("pumpguard.cursor")
            if kept is None or kept.connection is not conn:  # new or reconnected
                raw.info["pumpguard.cursor"] = RawCursor(conn)  # type: ignore[arg-type]
        except BaseException:
            raw.invalidate()
            raw.close()
            raise
        g.db_device_connection = raw
    cursor: RawCursor[Any] = raw.info["pumpguard.cursor"]
    return cursor


def _return_device_connection(raw: PoolProxiedConnection) -> None:
    try:
        # Idle in autocommit (each statement committed or failed on its own),
        # so switching back is local to the driver: no round trip.
        raw.driver_connection.autocommit = False  # type: ignore[union-attr]
    except psycopg.Error:
        raw.invalidate()  # broken or mid-transaction: never reuse it
    raw.close()


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
