"""Fixtures of the server suite: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from server_support import Pump, ServerEnv, enroll
from update_server import create_app
from update_server.db import dispose


@pytest.fixture
def app(server_env: ServerEnv) -> Iterator[Flask]:
    app = create_app(server_env.config())
    app.config["TESTING"] = True
    yield app
    dispose(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def admin_headers(server_env: ServerEnv) -> dict[str, str]:
    return {"Authorization": f"Bearer {server_env.admin_token}"}


@pytest.fixture
def pump(client: FlaskClient, admin_headers: dict[str, str]) -> Pump:
    p = Pump("pump-0001")
    enroll(client, admin_headers, p)
    return p
