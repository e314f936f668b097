"""Fixtures of the server suite: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from repo_support import RepoEnv
from server_support import ServerEnv, fresh_postgres_database, require_postgres
from update_server import create_app
from update_server.datadir import init_data_dir


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'server.db'}"
        return
    require_postgres()
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def server_env(repo_env: RepoEnv, database_url: str, tmp_path: Path) -> ServerEnv:
    data = tmp_path / "server"
    _, admin = init_data_dir(
        data,
        repo=repo_env.path,
        snapshot_key=str(repo_env.key("snapshot")),
        timestamp_key=str(repo_env.key("timestamp")),
        database_url=database_url,
    )
    return ServerEnv(repo_env, data, database_url, admin)


@pytest.fixture
def app(server_env: ServerEnv) -> Iterator[Flask]:
    app = create_app(server_env.config())
    app.config["TESTING"] = True
    yield app
    app.extensions["pumpguard.engine"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def admin_headers(server_env: ServerEnv) -> dict[str, str]:
    return {"Authorization": f"Bearer {server_env.admin_token}"}
