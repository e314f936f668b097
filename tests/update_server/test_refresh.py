"""Snapshot and timestamp stay fresh: at start, on a schedule, and for cron."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from tuf.ngclient import Updater

import update_server.refresher as refresher_module
from server_support import ServerEnv, live_server
from signer.repository import Repository
from update_server import create_app, publishing
from update_server.config import load_config
from update_server.db import dispose
from update_server.refresher import RefreshScheduler, refresh_online_roles


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _timestamp(server_env: ServerEnv) -> tuple[int, datetime]:
    ts = Repository(server_env.repo_dir).state().timestamp
    assert ts is not None
    return ts.signed.version, ts.signed.expires


def _sign_online_as_of(server_env: ServerEnv, when: datetime) -> None:
    """Re-sign snapshot and timestamp as if the clock said ``when`` (the last refresh)."""
    assert Repository(server_env.repo_dir).refresh(server_env.repo.online, force=True, now=when)


@contextmanager
def _app(server_env: ServerEnv, **overrides: Any) -> Iterator[Flask]:
    app = create_app(server_env.config(**overrides))
    try:
        yield app
    finally:
        scheduler = app.extensions.get("pumpguard.refresher")
        if scheduler is not None:
            scheduler.stop()
        dispose(app)


def _wait_for(condition: Any, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_expired_timestamp_is_resigned_at_start_after_a_long_stop(
    server_env: ServerEnv, tmp_path: Any
) -> None:
    # The server last re-signed three days ago and was then stopped: the
    # timestamp (1 day) has expired, the snapshot (7 days) is in its window.
    _sign_online_as_of(server_env, _now() - timedelta(days=3))
    version, expires = _timestamp(server_env)
    assert expires < _now()

    with _app(server_env) as app:  # refresh_interval=0: no scheduler, start-up only
        new_version, new_expires = _timestamp(server_env)
        assert new_version == version + 1
        assert new_expires > _now() + timedelta(hours=23)
        snapshot = Repository(server_env.repo_dir).state().snapshot
        assert snapshot is not None and snapshot.signed.expires > _now() + timedelta(days=6)
        # A pump that ships root v1 accepts the repository again.
        with live_server(app) as base:
            pump = tmp_path / "pump"
            pump.mkdir()
            Updater(
                metadata_dir=str(pump),
                metadata_base_url=f"{base}/tuf/metadata/",
                target_base_url=f"{base}/tuf/targets/",
                bootstrap=(server_env.repo_dir / "metadata/1.root.json").read_bytes(),
            ).refresh()


def test_refresh_for_cron_resigns_when_due_and_is_a_noop_when_fresh(
    server_env: ServerEnv,
) -> None:
    config = load_config(server_env.data_dir)
    before = (server_env.repo_dir / "metadata/timestamp.json").read_bytes()
    assert refresh_online_roles(config) is False
    assert (server_env.repo_dir / "metadata/timestamp.json").read_bytes() == before

    # Far in the future (a long stop): due, re-signed relative to that time.
    later = _now() + timedelta(days=40)
    version, _ = _timestamp(server_env)
    assert refresh_online_roles(config, now=later) is True
    new_version, expires = _timestamp(server_env)
    assert new_version == version + 1
    assert expires == later + timedelta(days=1)
    assert refresh_online_roles(config, now=later) is False
    assert refresh_online_roles(config, force=True, now=later) is True
    assert _timestamp(server_env)[0] == version + 2


def test_refresh_waits_for_a_publish_in_progress(app: Flask, server_env: ServerEnv) -> None:
    config = load_config(server_env.data_dir)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (refresh_online_roles(config, force=True), done.set()))
    version, _ = _timestamp(server_env)
    with publishing.locked_session(app.extensions["pumpguard.db"], "a publish"):
        thread.start()
        assert not done.wait(1.0), "re-signed while a publish held the lock"
        assert _timestamp(server_env)[0] == version
    assert done.wait(60)
    thread.join()
    assert _timestamp(server_env)[0] == version + 1


def test_scheduler_thread_resigns_when_the_timestamp_enters_its_window(
    server_env: ServerEnv,
) -> None:
    with _app(server_env, refresh_interval=0.1) as app:
        scheduler: RefreshScheduler = app.extensions["pumpguard.refresher"]
        assert scheduler.alive
        assert _wait_for(lambda: scheduler.ticks >= 2)
        assert scheduler.refreshes == 0  # fresh: ticks are no-ops
        # 20 hours pass: the 1-day timestamp is 4 h from expiry, inside its 12 h window.
        version, _ = _timestamp(server_env)
        _sign_online_as_of(server_env, _now() - timedelta(hours=20))  # version + 1
        assert _wait_for(lambda: _timestamp(server_env)[0] > version + 1)
        assert _timestamp(server_env)[1] > _now() + timedelta(hours=23)
        # The file is replaced inside the tick; the tick counts it when it returns.
        assert _wait_for(lambda: scheduler.refreshes == 1)
        assert scheduler.errors == 0


def test_scheduler_survives_errors_and_retries_next_tick(
    server_env: ServerEnv, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = refresher_module.refresh_due
    failures = {"left": 3}

    def flaky(repo: Repository, now: datetime | None = None) -> bool:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise OSError("disk briefly unavailable")
        return real(repo, now)

    _sign_online_as_of(server_env, _now() - timedelta(hours=20))
    with _app(server_env, refresh_interval=0.1) as app:
        # The start-up refresh has already re-signed; make it due again.
        monkeypatch.setattr(refresher_module, "refresh_due", flaky)
        version, _ = _timestamp(server_env)
        _sign_online_as_of(server_env, _now() - timedelta(hours=20))  # version + 1
        scheduler: RefreshScheduler = app.extensions["pumpguard.refresher"]
        assert _wait_for(lambda: _timestamp(server_env)[0] > version + 1)
        assert scheduler.errors == 3
        assert scheduler.alive
    assert "disk briefly unavailable" in caplog.text
    assert "retrying next tick" in caplog.text


def test_start_up_does_not_fail_when_the_online_keys_are_unavailable(
    server_env: ServerEnv, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _sign_online_as_of(server_env, _now() - timedelta(days=3))
    monkeypatch.delenv("PUMPGUARD_PASSPHRASE")
    with _app(server_env) as app:
        # The server still serves (pumps see the expired timestamp and wait);
        # the failure is logged for the operator.
        assert app.test_client().get("/tuf/metadata/timestamp.json").status_code == 200
    assert "start-up refresh of snapshot and timestamp failed" in caplog.text


def test_startup_refresh_runs_even_when_reconcile_fails(
    server_env: ServerEnv, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Indexing the releases fails at start: the expired timestamp is re-signed anyway."""
    _sign_online_as_of(server_env, _now() - timedelta(days=3))
    version, expires = _timestamp(server_env)
    assert expires < _now()

    def broken(*_args: Any, **_kwargs: Any) -> int:
        raise OSError("release index unreadable")

    monkeypatch.setattr(publishing, "reconcile_index", broken)
    with _app(server_env):
        new_version, new_expires = _timestamp(server_env)
        assert new_version == version + 1
        assert new_expires > _now() + timedelta(hours=23)
    assert "release index unreadable" in caplog.text
    assert "start-up indexing of published releases failed" in caplog.text


def test_scheduler_tick_refreshes_even_when_reconcile_fails(
    server_env: ServerEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each tick refreshes and indexes; a failure of one does not skip the other."""
    calls: list[str] = []

    def broken(*_args: Any, **_kwargs: Any) -> int:
        calls.append("reconcile")
        raise OSError("release index unreadable")

    with _app(server_env) as app:
        monkeypatch.setattr(publishing, "reconcile_index", broken)
        scheduler = RefreshScheduler(
            app.config["PUMPGUARD"],
            app.extensions["pumpguard.db"],
            lambda: publishing.online_signers(app),
            interval=60,
        )
        version, _ = _timestamp(server_env)
        _sign_online_as_of(server_env, _now() - timedelta(hours=20))  # version + 1
        assert scheduler.tick() is True
        assert _timestamp(server_env)[0] == version + 2
        assert calls == ["reconcile"]
        assert (scheduler.ticks, scheduler.refreshes, scheduler.errors) == (1, 1, 1)
