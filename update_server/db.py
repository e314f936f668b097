"""Database engine and sessions for the app (``init_app``), and migrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask, g
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["engine_for", "get_session", "init_app", "migrate", "session_scope"]

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
    # recycling connections bounds how stale one can get instead.
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

    @app.teardown_appcontext
    def _close(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()


def get_session() -> Session:
    """The current request's session."""
    from flask import current_app

    if "db_session" not in g:
        g.db_session = current_app.extensions["pumpguard.db"]()
    session: Session = g.db_session
    return session


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
