"""Exhausted pools and descriptors answer 503 with Retry-After; data files are private.

Threat SRV-DOS: a full database pool must answer at once that the client
should retry (never hang, never open another connection); checks that need
no database must not wait for one; running out of file descriptors must
not turn ``timestamp.json`` into a 404 (pumps would conclude there is none).
"""

from __future__ import annotations

import errno
import json
import os
import resource
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from pumpguard.device_auth import HEADER_SIGNATURE, sign_request
from pumpguard.errors import ConfigError
from repo_support import CliResult, RepoEnv
from server_support import DEVICES, Pump, ServerEnv, checkin_report, enroll
from update_server import create_app
from update_server.config import load_config
from update_server.datadir import init_data_dir
from update_server.db import DevicePool, dispose
from update_server.models import Device

POOL_TIMEOUT = 0.5


@pytest.fixture
def tight_app(server_env: ServerEnv) -> Iterator[Flask]:
    """An app whose pools hold one connection each and wait half a second."""
    app = create_app(server_env.config(db_pool_size=1, db_pool_timeout=POOL_TIMEOUT))
    yield app
    dispose(app)


def _checkin(client: FlaskClient, pump: Pump, **sign: Any) -> TestResponse:
    body = json.dumps(checkin_report(pump)).encode()
    headers = sign_request(pump.key, pump.device_id, "POST", pump.checkin_path, body, **sign)
    return client.post(pump.checkin_path, data=body, headers=headers)


def _assert_retry_later(r: TestResponse, took: float) -> None:
    assert r.status_code == 503, r.get_data(as_text=True)
    assert r.json is not None and r.json["error"]["code"] == "database_unavailable"
    assert r.headers["Retry-After"].isdigit()
    assert took < POOL_TIMEOUT + 2, f"answered after {took:.1f} s"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_full_checkin_pool_answers_503_at_once_and_serves_again_when_free(
    tight_app: Flask, server_env: ServerEnv
) -> None:
    client = tight_app.test_client()
    pump = Pump("pump-0001")
    enroll(client, {"Authorization": f"Bearer {server_env.admin_token}"}, pump)
    pool: DevicePool = tight_app.extensions["pumpguard.device_pool"]
    held = pool.take()  # every connection of the pool is in use
    try:
        began = time.monotonic()
        r = _checkin(client, pump)
        _assert_retry_later(r, time.monotonic() - began)
    finally:
        pool.give_back(held)
    assert _checkin(client, pump).status_code == 200


def _no_signature(pump: Pump) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(checkin_report(pump)).encode()
    headers = sign_request(pump.key, pump.device_id, "POST", pump.checkin_path, body)
    del headers[HEADER_SIGNATURE]
    return body, headers


def _declared_too_large(pump: Pump) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(checkin_report(pump, padding="x" * 20000)).encode()
    return body, sign_request(pump.key, pump.device_id, "POST", pump.checkin_path, body)


def _stale(pump: Pump) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(checkin_report(pump)).encode()
    stamp = int(time.time()) - 3600
    return body, sign_request(
        pump.key, pump.device_id, "POST", pump.checkin_path, body, timestamp=stamp
    )


def _other_signer(pump: Pump) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(checkin_report(pump)).encode()
    return body, sign_request(pump.key, "pump-0002", "POST", pump.checkin_path, body)


@pytest.mark.parametrize(
    ("make", "status", "words"),
    [
        pytest.param(_no_signature, 401, "lacks", id="signature-header-missing"),
        pytest.param(_declared_too_large, 413, "exceeds", id="declared-body-too-large"),
        pytest.param(_stale, 401, "clock is off", id="timestamp-outside-the-skew"),
        pytest.param(_other_signer, 401, "signed by device", id="signed-as-another-device"),
    ],
)
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_checks_that_need_no_database_answer_while_the_pool_is_exhausted(
    tight_app: Flask,
    make: Callable[[Pump], tuple[bytes, dict[str, str]]],
    status: int,
    words: str,
) -> None:
    # A forged request is refused before it takes a connection: with none
    # free, it is answered at once, not after the pool's timeout with a 503.
    client = tight_app.test_client()
    pool: DevicePool = tight_app.extensions["pumpguard.device_pool"]
    pump = Pump("pump-0001")  # not even enrolled: nothing was read
    body, headers = make(pump)
    held = pool.take()
    try:
        began = time.monotonic()
        r = client.post(pump.checkin_path, data=body, headers=headers)
        took = time.monotonic() - began
    finally:
        pool.give_back(held)
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.json is not None and words in r.json["error"]["message"]
    assert took < POOL_TIMEOUT / 2, f"waited {took:.2f} s for a connection it does not need"


def test_a_full_session_pool_answers_503_at_once(tight_app: Flask, server_env: ServerEnv) -> None:
    # The sessions' pool is bounded too (no overflow): a request that needs
    # it waits at most db_pool_timeout.
    client = tight_app.test_client()
    engine = tight_app.extensions["pumpguard.engine"]
    with engine.connect():  # the pool's only connection
        began = time.monotonic()
        r = client.get(DEVICES, headers={"Authorization": f"Bearer {server_env.admin_token}"})
        _assert_retry_later(r, time.monotonic() - began)
    r = client.get(DEVICES, headers={"Authorization": f"Bearer {server_env.admin_token}"})
    assert r.status_code == 200, r.json


# ------------------------------------------------------------- file descriptors


@contextmanager
def descriptors_exhausted() -> Iterator[None]:
    """Every file descriptor the process may open is open (a real EMFILE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 16, hard))
    fds: list[int] = []
    try:
        while True:
            try:
                fds.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as e:
                assert e.errno == errno.EMFILE
                break
        yield
    finally:
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize(
    ("path", "exhausted", "status"),
    [
        pytest.param("/tuf/metadata/timestamp.json", True, 503, id="timestamp-emfile"),
        pytest.param("/tuf/metadata/1.root.json", True, 503, id="root-emfile"),
        pytest.param("/tuf/targets/sigma-spectrum/1.0.0/x.bin", True, 503, id="target-emfile"),
        pytest.param("/tuf/metadata/2.root.json", False, 404, id="missing-file-still-404"),
    ],
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_out_of_descriptors_is_503_to_retry_never_404(
    client: FlaskClient, path: str, exhausted: bool, status: int
) -> None:
    # Before, EMFILE on open was answered 404: a pump polling timestamp.json
    # or probing for the next root version was told there is none.
    assert client.get("/tuf/metadata/timestamp.json").status_code == 200  # warm: imports done
    if exhausted:
        with descriptors_exhausted():
            r = client.get(path)
    else:
        r = client.get(path)
    assert r.status_code == status, r.get_data(as_text=True)
    if status == 503:
        assert r.headers["Retry-After"].isdigit()
        assert r.headers["Cache-Control"] == "no-store"
        assert r.json is not None and r.json["error"]["code"] == "unavailable"
    assert client.get("/tuf/metadata/timestamp.json").status_code == 200


# ------------------------------------------------------------------ data files


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_sqlite_database_and_its_wal_files_are_private(
    repo_env: RepoEnv, tmp_path: Path
) -> None:
    # Created world-readable before (umask 022): token hashes, device keys
    # and the audit log. SQLite gives -wal and -shm the database's mode.
    data = tmp_path / "srv"
    old = os.umask(0o022)
    try:
        _, admin = init_data_dir(
            data,
            repo=repo_env.path,
            snapshot_key=str(repo_env.key("snapshot")),
            timestamp_key=str(repo_env.key("timestamp")),
        )
        app = create_app({"data_dir": data, "refresh_interval": 0})
        try:
            client = app.test_client()
            enroll(client, {"Authorization": f"Bearer {admin}"}, Pump("pump-0001"))
            with app.extensions["pumpguard.db"].begin() as s:
                assert s.get(Device, "pump-0001") is not None  # a connection holds the WAL
                files = [data / f"server.db{suffix}" for suffix in ("", "-wal", "-shm")]
                assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
        finally:
            dispose(app)
        # One left readable by an older version is narrowed when opened.
        (data / "server.db").chmod(0o644)
        dispose(create_app({"data_dir": data, "refresh_interval": 0}))
        assert _mode(data / "server.db") == 0o600
    finally:
        os.umask(old)


# -------------------------------------------------------------------- settings

SECONDS = ("header_timeout", "body_timeout", "send_timeout", "db_pool_timeout")
COUNTS = ("threads", "connection_limit", "max_large_bodies", "db_pool_size")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        *[(f"{n} = 0\n", f"{n} must be a number of seconds above 0") for n in SECONDS],
        *[(f"{n} = nan\n", f"{n} must be a number of seconds") for n in SECONDS],
        *[(f"{n} = inf\n", f"{n} must be a number of seconds") for n in SECONDS],
        *[(f"{n} = true\n", f"{n} must be a number of seconds") for n in SECONDS],
        ("header_timeout = 3601\n", "at most 3600"),
        ("db_pool_timeout = 61\n", "at most 60"),
        *[(f"{n} = 0\n", f"{n} must be a positive integer") for n in COUNTS],
        *[(f"{n} = 1.5\n", f"{n} must be a positive integer") for n in COUNTS],
        ("threads = 257\n", "threads must be at most 256"),
        ("db_pool_size = 1001\n", "db_pool_size must be at most 1000"),
    ],
)
def test_server_run_settings_must_be_finite_and_bounded(
    tmp_path: Path, toml: str, message: str
) -> None:
    (tmp_path / "server.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, environ={})


def test_server_run_settings_come_from_the_environment_too(tmp_path: Path) -> None:
    config = load_config(
        tmp_path, environ={"PUMPGUARD_HEADER_TIMEOUT": "2.5", "PUMPGUARD_DB_POOL_SIZE": "3"}
    )
    assert (config.header_timeout, config.db_pool_size) == (2.5, 3)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_server_run_refuses_a_bad_flag_in_one_line(
    server_env: ServerEnv, run_cli: Callable[..., CliResult]
) -> None:
    r = run_cli("server", "run", "--data", server_env.data_dir, "--threads", "0", "--port", "0")
    assert r.code == 2
    assert r.err.strip() == "error: threads must be a positive integer, not 0"
