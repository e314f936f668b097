"""A release published by a server that died before recording it keeps its publisher (finding 7).

Threat SRV-REPUDIATION: when the server died right after ``timestamp.json``
was replaced, the release was re-indexed as published by "reconciled" and
the audit entry lost version, token and signers. Each upload now records
who publishes what, committed before the repository is written.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from flask.testing import FlaskClient
from sqlalchemy import inspect, select
from sqlalchemy.orm import sessionmaker
from upload_support import PRODUCT, gunicorn, make_token, upload_head
from upload_support import Upload as Sending

from repo_support import RepoEnv
from server_support import ServerEnv
from signer.keys import load_public_key
from signer.repository import Repository
from update_server import models
from update_server.audit import verify_chain
from update_server.db import engine_for
from update_server.models import ApiToken, AuditEntry, Base, Release

TAR = "application/x-tar"

# Run in each gunicorn worker before the app is loaded: the first time
# timestamp.json is replaced, the worker SIGKILLs itself (the server dies
# right after the release became visible, before its commit).
_CRASH_CONF = """
import os
import signal


def post_fork(server, worker):
    import signer.repository as repository

    real = repository.atomic_write_bytes
    marker = os.environ["PUMPGUARD_TEST_CRASH_MARKER"]

    def write(path, data, *args, **kwargs):
        real(path, data, *args, **kwargs)
        if path.name == "timestamp.json" and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)

    repository.atomic_write_bytes = write
"""


def _keyids(server_env: ServerEnv, *names: str) -> list[str]:
    return sorted(load_public_key(server_env.repo.pub(n)).keyid for n in names)


def _token_row(server_env: ServerEnv, name: str) -> tuple[int, str]:
    engine = engine_for(server_env.database_url)
    try:
        with sessionmaker(engine).begin() as s:
            token = s.execute(select(ApiToken).where(ApiToken.name == name)).scalar_one()
            return token.id, f"token:{token.id}:{token.name}"
    finally:
        engine.dispose()


def test_a_publish_killed_right_after_timestamp_json_is_replaced_keeps_its_publisher(
    server_env: ServerEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "crash.conf.py"
    conf.write_text(textwrap.dedent(_CRASH_CONF))
    marker = tmp_path / "crashed"
    monkeypatch.setenv("PUMPGUARD_TEST_CRASH_MARKER", str(marker))
    secret = make_token(server_env, "release-engineer", (PRODUCT,))
    token_id, actor = _token_row(server_env, f"release-engineer {PRODUCT}")
    data = server_env.repo.bundle("1.0.0", 1, tar=True).read_bytes()
    with gunicorn(server_env, "-c", str(conf), "--workers", "1") as server:
        upload = Sending.start(server.port, upload_head(secret, len(data)), data)
        try:
            upload.sock.settimeout(60)
            assert upload.sock.recv(1 << 16) == b"", "the worker answered instead of dying"
        finally:
            upload.close()
        assert marker.exists()
        # Visible to pumps: timestamp.json leads to the release.
        assert [r.version for r in Repository(server_env.repo_dir).releases(PRODUCT)] == ["1.0.0"]
        # The master starts a new worker; its start indexes the release.
        deadline = time.monotonic() + 60
        while True:
            request = urllib.request.Request(
                f"{server.base}/api/v1/releases", headers={"Authorization": f"Bearer {secret}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as r:
                    listing: dict[str, Any] = json.loads(r.read())
                if listing["releases"]:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)
        # The new worker removed what the killed one had unpacked.
        assert sorted((server_env.data_dir / "uploads").iterdir()) == []
    (release,) = listing["releases"]
    assert release["version"] == "1.0.0"
    assert release["published_by"] == actor  # was "reconciled"
    assert release["signed_by"] == _keyids(server_env, "re1", "qa1")
    engine = engine_for(server_env.database_url)
    try:
        with sessionmaker(engine).begin() as s:
            verify_chain(s)
            entry = s.execute(select(AuditEntry).order_by(AuditEntry.seq.desc())).scalars().first()
            assert entry is not None
            assert (entry.actor, entry.action) == (actor, "release.publish")
            detail = entry.detail
            assert (detail["product"], detail["version"], detail["release_counter"]) == (
                PRODUCT,
                "1.0.0",
                1,
            )
            assert detail["signers"] == _keyids(server_env, "re1", "qa1")
            assert detail["threshold"] == 2
            assert detail["token_id"] == token_id
            assert detail["reconciled"] is True
            assert detail["bundle_sha256"] == hashlib.sha256(data).hexdigest()
            rec = s.execute(select(models.Upload)).scalar_one()
            assert rec.state == "reconciled"
    finally:
        engine.dispose()


def _server_repo(server_env: ServerEnv) -> RepoEnv:
    return RepoEnv(server_env.repo_dir, server_env.repo.keys, server_env.repo.work)


def test_each_upload_is_recorded_before_the_repository_is_written_and_marked_when_it_ends(
    client: FlaskClient, server_env: ServerEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = make_token(server_env, "release-engineer", (PRODUCT,))
    token_id, actor = _token_row(server_env, f"release-engineer {PRODUCT}")
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": TAR}
    env = _server_repo(server_env)
    refused = env.bundle("1.0.0", 1, signers=("re1",), tar=True).read_bytes()
    good = env.bundle("1.0.1", 2, tar=True).read_bytes()
    seen: list[list[tuple[str, str]]] = []
    real = Repository.publish

    def publish(self: Repository, *args: Any, **kwargs: Any) -> Any:
        # What another connection sees as the repository is about to be written.
        engine = engine_for(server_env.database_url)
        try:
            with sessionmaker(engine).begin() as s:
                seen.append(
                    [(u.version, u.state) for u in s.execute(select(models.Upload)).scalars()]
                )
        finally:
            engine.dispose()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Repository, "publish", publish)
    url = f"/api/v1/releases?product={PRODUCT}"
    assert client.post(url, data=refused, headers=headers).status_code == 422
    r = client.post(url, data=good, headers=headers)
    assert r.status_code == 201, r.json
    # The repository's one verification refuses the first upload (its record,
    # committed before, is then marked failed); the second finds it so.
    assert seen == [[("1.0.0", "publishing")], [("1.0.0", "failed"), ("1.0.1", "publishing")]]
    engine = engine_for(server_env.database_url)
    try:
        with sessionmaker(engine).begin() as s:
            rows = s.execute(select(models.Upload).order_by(models.Upload.id)).scalars().all()
            assert [(u.version, u.state) for u in rows] == [("1.0.0", "failed"), ("1.0.1", "done")]
            rec = rows[1]
            assert (rec.actor, rec.token_id, rec.product) == (actor, token_id, PRODUCT)
            assert (rec.release_counter, rec.threshold) == (2, 2)
            assert rec.signers == _keyids(server_env, "re1", "qa1")
            assert rec.bundle_sha256 == hashlib.sha256(good).hexdigest()
            assert rec.finished_at is not None
            index = s.execute(select(Release)).scalar_one()
            assert (index.published_by, index.signed_by) == (actor, rec.signers)
    finally:
        engine.dispose()


def _alembic(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option(
        "script_location", str(Path(__file__).parents[2] / "update_server" / "migrations")
    )
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def test_migration_0004_creates_the_uploads_table_the_model_describes(
    server_env: ServerEnv,
) -> None:
    """The data folder was migrated to head by init; the table matches the model
    and the downgrade to 0003 removes it."""
    engine = engine_for(server_env.database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert [d for d in diff if "uploads" in repr(d)] == []
        command.downgrade(_alembic(server_env.database_url), "0003")
        assert "uploads" not in inspect(engine).get_table_names()
        command.upgrade(_alembic(server_env.database_url), "head")
        assert "uploads" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
