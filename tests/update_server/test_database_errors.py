"""Database failures: 503 to retry when the database is unavailable, 500 for a bug."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy
from flask.testing import FlaskClient
from sqlalchemy import text

from server_support import ServerEnv
from update_server import create_app
from update_server.db import dispose, engine_for, is_unavailable


def _locked(tmp_path: Path) -> BaseException:
    # Another connection holds the write lock; this one does not wait for it.
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError) as e:
            sqlite3.connect(path, timeout=0).execute("INSERT INTO t VALUES (1)")
        return e.value
    finally:
        holder.close()


def _no_such_table(tmp_path: Path) -> BaseException:
    with pytest.raises(sqlite3.OperationalError) as e:
        sqlite3.connect(tmp_path / "empty.db").execute("SELECT * FROM releases")
    return e.value


def _cannot_open(tmp_path: Path) -> BaseException:
    with pytest.raises(sqlite3.OperationalError) as e:
        sqlite3.connect(tmp_path / "missing-dir" / "db.sqlite")
    return e.value


def _wrapped_no_such_table(tmp_path: Path) -> BaseException:
    engine = engine_for(f"sqlite:///{tmp_path / 'wrapped.db'}")
    try:
        with pytest.raises(sqlalchemy.exc.OperationalError) as e, engine.connect() as conn:
            conn.execute(text("SELECT * FROM releases"))
        return e.value
    finally:
        engine.dispose()


def _wrapped_locked(tmp_path: Path) -> BaseException:
    error = _locked(tmp_path)
    return sqlalchemy.exc.OperationalError("INSERT INTO t VALUES (1)", {}, error)


def _postgres_refused(tmp_path: Path) -> BaseException:
    # Nothing listens on port 1 (the database is down or restarting).
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect("postgresql://pg@127.0.0.1:1/none", connect_timeout=2)
    return e.value


@pytest.mark.parametrize(
    ("make_error", "unavailable"),
    [
        (_locked, True),
        (_wrapped_locked, True),
        (_cannot_open, True),
        (_postgres_refused, True),
        (_no_such_table, False),
        (_wrapped_no_such_table, False),
        (lambda _: ValueError("not a database error"), False),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)).strip("_"),
)
def test_is_unavailable_tells_a_down_database_from_a_broken_schema(
    tmp_path: Path, make_error: Callable[[Path], BaseException], unavailable: bool
) -> None:
    assert is_unavailable(make_error(tmp_path)) is unavailable


@pytest.fixture
def untested_client(server_env: ServerEnv) -> Iterator[FlaskClient]:
    # Not in TESTING mode: errors take the path they take in production.
    app = create_app(server_env.config())
    yield app.test_client()
    dispose(app)


def test_missing_table_answers_500_not_a_503_to_retry(
    untested_client: FlaskClient, server_env: ServerEnv, database_url: str
) -> None:
    # A schema error is a server bug: retrying never helps, so no 503 and no
    # Retry-After, on SQLite (whose driver calls it an operational error)
    # as on PostgreSQL.
    engine = engine_for(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE releases RENAME TO releases_gone"))
    finally:
        engine.dispose()
    r = untested_client.get(
        "/api/v1/releases", headers={"Authorization": f"Bearer {server_env.admin_token}"}
    )
    assert r.status_code == 500, r.get_data(as_text=True)
    assert r.json is not None and r.json["error"]["code"] == "internal_server_error"
    assert "Retry-After" not in r.headers
    assert "releases" not in r.get_data(as_text=True)
