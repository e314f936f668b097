"""Test support for the update server: data folders, databases, live servers."""

from __future__ import annotations

import json
import os
import ssl
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server
from werkzeug.test import TestResponse

from pumpguard.device_auth import sign_request
from repo_support import PRODUCT, RepoEnv

DEVICES = "/api/v1/devices"

PG_MAINTENANCE = os.environ.get(
    "PUMPGUARD_TEST_POSTGRES", "postgresql+psycopg:///postgres?host=/var/run/postgresql"
)


def _psycopg_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def postgres_available() -> str | None:
    """None if the test PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(_psycopg_dsn(PG_MAINTENANCE), connect_timeout=3):
            return None
    except Exception as e:
        return f"PostgreSQL is not available at {PG_MAINTENANCE}: {e}"


def require_postgres() -> None:
    """Fail under CI=true, skip elsewhere, when PostgreSQL is missing."""
    reason = postgres_available()
    if reason is None:
        return
    reason += " (make test starts it with scripts/start-postgres.sh)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _worker() -> str:
    """The pytest-xdist worker id (``gw0`` ...), or ``main`` without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _postgres_url(name: str) -> str:
    base, _, query = PG_MAINTENANCE.partition("?")
    return base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")


def _drop_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect(_psycopg_dsn(PG_MAINTENANCE), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_postgres_database(template: str | None = None) -> Iterator[str]:
    """A new database for one test (empty, or a copy of ``template``); dropped afterwards.

    The name is unique (worker id and a random part), so parallel workers and
    other runs sharing the machine's PostgreSQL never meet.
    """
    import psycopg

    name = f"pumpguard_test_{_worker()}_{uuid.uuid4().hex[:12]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(_psycopg_dsn(PG_MAINTENANCE), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{clause}')
    try:
        yield _postgres_url(name)
    finally:
        _drop_postgres_database(name)


@contextmanager
def migrated_postgres_template() -> Iterator[str]:
    """A database migrated to the newest schema, to copy with CREATE DATABASE ... TEMPLATE.

    Made once per session (per xdist worker) and dropped at its end. Yields its
    name. Nothing stays connected to it, which PostgreSQL requires of a template.
    """
    import psycopg

    from update_server.db import migrate

    name = f"pumpguard_tmpl_{_worker()}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_psycopg_dsn(PG_MAINTENANCE), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate(_postgres_url(name))
        yield name
    finally:
        _drop_postgres_database(name)


@dataclass
class ServerEnv:
    """A server data folder built from a RepoEnv's repository and keys."""

    repo: RepoEnv
    data_dir: Path
    database_url: str
    admin_token: str

    @property
    def repo_dir(self) -> Path:
        return self.data_dir / "repo"

    def config(self, **overrides: Any) -> dict[str, Any]:
        return {
            "data_dir": self.data_dir,
            "database_url": self.database_url,
            "refresh_interval": 0,
            **overrides,
        }


@contextmanager
def live_server(app: Flask, ssl_context: ssl.SSLContext | None = None) -> Iterator[str]:
    """Serve ``app`` over real HTTP(S) on loopback; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=ssl_context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        scheme = "https" if ssl_context else "http"
        yield f"{scheme}://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Pump:
    """A simulated pump with its own Ed25519 device key."""

    device_id: str
    hardware_id: str = "rev-b"
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def checkin_path(self) -> str:
        return f"{DEVICES}/{self.device_id}/checkin"

    @property
    def public_hex(self) -> str:
        raw = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return raw.hex()

    def enrollment(self, **changes: Any) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "hardware_id": self.hardware_id,
            "product": PRODUCT,
            "public_key": self.public_hex,
            **changes,
        }

    def post(self, client: FlaskClient, what: str, body: bytes | dict[str, Any]) -> TestResponse:
        """A correctly signed POST to ``/api/v1/devices/<id>/<what>``."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        path = f"{DEVICES}/{self.device_id}/{what}"
        headers = sign_request(self.key, self.device_id, "POST", path, data)
        return client.post(path, data=data, headers=headers, content_type="application/json")

    def checkin(self, client: FlaskClient, **changes: Any) -> TestResponse:
        return self.post(client, "checkin", checkin_report(self, **changes))


def checkin_report(pump: Pump, **changes: Any) -> dict[str, Any]:
    return {
        "product": PRODUCT,
        "hardware_id": pump.hardware_id,
        "version": "1.0.0",
        "release_counter": 1,
        "slots": {
            "a": {"state": "active", "version": "1.0.0", "release_counter": 1},
            "b": {"state": "empty"},
        },
        "last_update": None,
        "therapy": {"state": "idle"},
        **changes,
    }


def enroll(client: FlaskClient, headers: dict[str, str], pump: Pump) -> None:
    r = client.post(DEVICES, json=pump.enrollment(), headers=headers)
    assert r.status_code == 201, r.json
