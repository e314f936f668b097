"""POST /api/v1/releases: only a complete two-person release of the token's product gets in.

Every refusal leaves the repository byte-for-byte as it was and adds no
release to the index; a stolen token alone publishes nothing.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.orm import SessionTransaction, sessionmaker

import signer.repository
from repo_support import PRODUCT, RepoEnv
from server_support import ServerEnv, live_server
from signer.bundle import create_release
from signer.keys import load_public_key
from signer.repository import Repository
from signer.status import repo_status
from update_server import create_app, publishing, releases
from update_server.audit import verify_chain
from update_server.auth import create_token
from update_server.db import dispose, engine_for
from update_server.models import ApiToken, AuditEntry, Release
from update_server.refresher import RefreshScheduler

Tree = Callable[[Path], dict[str, bytes]]
TAR = "application/x-tar"


def _server_repo(server_env: ServerEnv) -> RepoEnv:
    return RepoEnv(server_env.repo_dir, server_env.repo.keys, server_env.repo.work)


def _token(server_env: ServerEnv, role: str, products: tuple[str, ...] = ()) -> str:
    engine = engine_for(server_env.database_url)
    try:
        with sessionmaker(engine).begin() as s:
            _, secret = create_token(s, f"{role} {' '.join(products)}", role, products)
    finally:
        engine.dispose()
    return secret


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def engineer(server_env: ServerEnv) -> dict[str, str]:
    """Headers of a release engineer of sigma-spectrum."""
    return _auth(_token(server_env, "release-engineer", ("sigma-spectrum",)))


def _post(
    client: FlaskClient, bundle: Path, headers: dict[str, str], product: str | None = PRODUCT
) -> Any:
    """POST the bundle as the client does, declaring its product (None: declare none)."""
    return client.post(
        "/api/v1/releases" + (f"?product={product}" if product else ""),
        data=bundle.read_bytes(),
        headers={**headers, "Content-Type": TAR},
    )


def _counts(server_env: ServerEnv) -> tuple[int, int]:
    engine = engine_for(server_env.database_url)
    try:
        with sessionmaker(engine).begin() as s:
            releases = s.execute(select(func.count()).select_from(Release)).scalar_one()
            publishes = s.execute(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.action == "release.publish")
            ).scalar_one()
            return releases, publishes
    finally:
        engine.dispose()


@contextlib.contextmanager
def _unchanged(server_env: ServerEnv, tree: Tree) -> Iterator[None]:
    """Assert the repository, the index and the audit log are as before."""

    def published() -> dict[str, bytes]:
        # The writers' lock file is not part of the repository.
        return {k: v for k, v in tree(server_env.repo_dir).items() if k != ".lock"}

    before = published()
    counts = _counts(server_env)
    yield
    assert published() == before
    assert _counts(server_env) == counts
    uploads = server_env.data_dir / "uploads"
    assert not uploads.exists() or not list(uploads.iterdir())


def _tar(directory: Path, out: Path) -> Path:
    with tarfile.open(out, "w") as tar:
        for item in sorted(directory.rglob("*")):
            if item.is_file():
                tar.add(item, item.relative_to(directory).as_posix())
    return out


# --------------------------------------------------------------- refusals
def test_upload_without_token_is_refused_and_repository_unchanged(
    client: FlaskClient, server_env: ServerEnv, tree: Tree
) -> None:
    bundle = _server_repo(server_env).bundle("1.0.0", 1, tar=True)
    with _unchanged(server_env, tree):
        for headers in ({}, {"Authorization": "Bearer pgt_not-a-token"}, {"Authorization": "x"}):
            r = _post(client, bundle, headers)
            assert r.status_code == 401
            assert r.json["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("declared", "status", "message"),
    [
        # Declared honestly: refused from the query, before the body.
        (PRODUCT, 403, "this token may not publish sigma-spectrum releases"),
        # Not declared: the token's one product is meant, and the bundle is not of it.
        (None, 422, "the upload declared product other-pump; the bundle is a sigma-spectrum"),
        # Declared falsely: the bundle must be of the declared product.
        ("other-pump", 422, "the upload declared product other-pump; the bundle is a sigma-"),
    ],
)
def test_upload_with_token_for_another_product_is_refused_and_repository_unchanged(
    client: FlaskClient,
    server_env: ServerEnv,
    tree: Tree,
    declared: str | None,
    status: int,
    message: str,
) -> None:
    bundle = _server_repo(server_env).bundle("1.0.0", 1, tar=True)
    other = _auth(_token(server_env, "release-engineer", ("other-pump",)))
    with _unchanged(server_env, tree):
        r = _post(client, bundle, other, declared)
        assert r.status_code == status, r.json
        assert r.json["error"]["message"].startswith(message), r.json


def test_upload_by_a_token_of_several_products_must_declare_one(
    client: FlaskClient, server_env: ServerEnv, tree: Tree
) -> None:
    bundle = _server_repo(server_env).bundle("1.0.0", 1, tar=True)
    both = _auth(_token(server_env, "release-engineer", ("other-pump", PRODUCT)))
    with _unchanged(server_env, tree):
        for query, message in (
            ("", "name the bundle's: POST /api/v1/releases?product=<product>"),
            ("?product=a&product=b", "name one product"),
            ("?product=Not_Valid", "product"),
            ("?colour=red", "unknown query parameter(s): colour"),
        ):
            r = client.post(
                "/api/v1/releases" + query,
                data=bundle.read_bytes(),
                headers={**both, "Content-Type": TAR},
            )
            assert r.status_code == 400, (query, r.json)
            assert message in r.json["error"]["message"], (query, r.json)
    r = _post(client, bundle, both)
    assert r.status_code == 201, r.json


@pytest.mark.parametrize("role", ["operator", "reviewer"])
def test_upload_with_a_token_of_a_role_that_does_not_publish_is_refused(
    client: FlaskClient, server_env: ServerEnv, tree: Tree, role: str
) -> None:
    bundle = _server_repo(server_env).bundle("1.0.0", 1, tar=True)
    with _unchanged(server_env, tree):
        assert _post(client, bundle, _auth(_token(server_env, role))).status_code == 403


def test_release_below_threshold_is_refused_and_repository_unchanged(
    client: FlaskClient, server_env: ServerEnv, tree: Tree, engineer: dict[str, str]
) -> None:
    bundle = _server_repo(server_env).bundle("1.0.0", 1, signers=("re1",), tar=True)
    with _unchanged(server_env, tree):
        r = _post(client, bundle, engineer)
        assert r.status_code == 422
        assert r.json["error"]["code"] == "refused"
        assert "signed by 1 of the 2 required keys" in r.json["error"]["message"]


def test_signature_by_a_key_outside_the_delegation_does_not_count(
    client: FlaskClient, server_env: ServerEnv, tree: Tree, engineer: dict[str, str]
) -> None:
    bundle = _server_repo(server_env).bundle("1.0.0", 1, signers=("re1", "outsider"), tar=True)
    with _unchanged(server_env, tree):
        r = _post(client, bundle, engineer)
        assert r.status_code == 422
        assert "were not counted" in r.json["error"]["message"]


def test_tampered_firmware_is_refused_and_repository_unchanged(
    client: FlaskClient, server_env: ServerEnv, tree: Tree, engineer: dict[str, str]
) -> None:
    env = _server_repo(server_env)
    bundle = env.bundle("1.0.0", 1)  # a directory, signed by both
    firmware = bundle / "targets/sigma-spectrum/1.0.0/firmware.img"
    data = bytearray(firmware.read_bytes())
    data[100] ^= 0x01  # one bit after both signatures
    firmware.write_bytes(bytes(data))
    tampered = _tar(bundle, env.work / "tampered.tar")
    with _unchanged(server_env, tree):
        r = _post(client, tampered, engineer)
        assert r.status_code == 422
        assert "does not match the length and sha256" in r.json["error"]["message"]


def test_replayed_bundle_is_refused_as_stale(
    client: FlaskClient, server_env: ServerEnv, tree: Tree, engineer: dict[str, str]
) -> None:
    bundle = _server_repo(server_env).bundle("1.0.0", 1, tar=True)
    assert _post(client, bundle, engineer).status_code == 201
    with _unchanged(server_env, tree):
        r = _post(client, bundle, engineer)
        assert r.status_code == 422
        assert "is not the next version" in r.json["error"]["message"]


def test_malformed_uploads_get_json_errors_and_change_nothing(
    client: FlaskClient, server_env: ServerEnv, tree: Tree, engineer: dict[str, str]
) -> None:
    env = _server_repo(server_env)
    bundle = env.bundle("1.0.0", 1, tar=True)
    evil = env.work / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        tar.addfile(info)
    cases: list[tuple[bytes, str, int, str]] = [
        (b"not a tar at all", TAR, 422, "the bundle tar is truncated"),
        (b"\x01" * 1024, TAR, 422, "the bundle tar is not a tar archive"),
        (evil.read_bytes(), TAR, 422, "the bundle tar has a member with a '..' component"),
        (b"", TAR, 400, "must be a release bundle"),
        (bundle.read_bytes(), "application/json", 415, "application/x-tar"),
        (bundle.read_bytes(), "", 415, "application/x-tar"),
    ]
    with _unchanged(server_env, tree):
        for body, ctype, status, message in cases:
            headers = {**engineer, **({"Content-Type": ctype} if ctype else {})}
            r = client.post("/api/v1/releases", data=body, headers=headers)
            assert r.status_code == status, (status, r.json)
            assert message in r.json["error"]["message"], r.json
    assert not (server_env.repo_dir.parent / "escape.txt").exists()


def test_bundle_larger_than_the_limit_is_413(
    server_env: ServerEnv, tree: Tree, engineer: dict[str, str]
) -> None:
    """And one of unknown length (chunked) is 411: both decided from the request
    head, the body never read (threat SRV-DOS)."""
    app = create_app(server_env.config(max_bundle_bytes=4096))
    try:
        bundle = _server_repo(server_env).bundle("1.0.0", 1, tar=True)
        client = app.test_client()
        with _unchanged(server_env, tree):
            r = _post(client, bundle, engineer)
            assert r.status_code == 413
            assert r.json["error"]["code"] == "payload_too_large"
            # Without a Content-Length (chunked) the size is not known up front.
            data = bundle.read_bytes()
            with live_server(app) as base:
                port = int(base.rsplit(":", 1)[1])
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request(
                    "POST",
                    f"/api/v1/releases?product={PRODUCT}",
                    body=iter([data[i : i + 1000] for i in range(0, len(data), 1000)]),
                    headers={**engineer, "Content-Type": TAR},
                    encode_chunked=True,
                )
                response = conn.getresponse()
                body = json.loads(response.read())
                conn.close()
            assert response.status == 411, body
            assert body["error"]["code"] == "length_required"
            assert "Content-Length" in body["error"]["message"]
    finally:
        dispose(app)


# -------------------------------------------------------------- publishing
def test_two_person_release_is_published_indexed_audited_and_listed(
    client: FlaskClient, server_env: ServerEnv, engineer: dict[str, str], admin_headers: Any
) -> None:
    env = _server_repo(server_env)
    r = _post(client, env.bundle("1.0.0", 1, tar=True), engineer)
    assert r.status_code == 201, r.json
    release = r.json
    assert release["product"] == "sigma-spectrum"
    assert release["version"] == "1.0.0"
    assert release["release_counter"] == 1
    assert release["hardware_ids"] == ["rev-b"]
    assert release["firmware"]["path"] == "sigma-spectrum/1.0.0/firmware.img"
    assert release["firmware"]["length"] == 4096
    assert release["sbom_path"] == "sigma-spectrum/1.0.0/sbom.cdx.json"
    assert release["notes"] == "release 1.0.0"
    assert len(release["signed_by"]) == 2
    assert release["published_by"].startswith("token:")
    assert release["published_at"].endswith("Z")
    assert r.headers["Location"] == "/api/v1/releases?product=sigma-spectrum"

    # The repository has it, consistently.
    repo = Repository(server_env.repo_dir)
    assert [x.version for x in repo.releases("sigma-spectrum")] == ["1.0.0"]
    assert repo_status(repo).errors == []
    fw = repo.state().product("sigma-spectrum")
    assert fw is not None
    firmware = fw.signed.targets["sigma-spectrum/1.0.0/firmware.img"]
    assert firmware.hashes["sha256"] == release["firmware"]["sha256"]

    # An admin may publish too; the list shows newest first.
    r = _post(client, env.bundle("1.1.0", 2, tar=True), admin_headers)
    assert r.status_code == 201, r.json
    listing = client.get("/api/v1/releases", headers=engineer).json
    assert [x["version"] for x in listing["releases"]] == ["1.1.0", "1.0.0"]
    assert listing["total"] == 2
    assert listing["releases"][1] == release

    engine = engine_for(server_env.database_url)
    try:
        with sessionmaker(engine).begin() as s:
            verify_chain(s)
            entries = (
                s.execute(select(AuditEntry).where(AuditEntry.action == "release.publish"))
                .scalars()
                .all()
            )
            assert [e.detail["version"] for e in entries] == ["1.0.0", "1.1.0"]
            assert entries[0].detail["signers"] == release["signed_by"]
            assert entries[0].detail["release_counter"] == 1
            assert entries[0].actor == release["published_by"]
    finally:
        engine.dispose()


def test_release_list_filters_pages_and_checks_its_parameters(
    client: FlaskClient, server_env: ServerEnv, engineer: dict[str, str]
) -> None:
    env = _server_repo(server_env)
    for i in range(3):
        assert _post(client, env.bundle(f"1.{i}.0", i + 1, tar=True), engineer).status_code == 201
    reviewer = _auth(_token(server_env, "reviewer"))
    page = client.get("/api/v1/releases?product=sigma-spectrum&limit=2&offset=1", headers=reviewer)
    assert page.status_code == 200
    assert [x["version"] for x in page.json["releases"]] == ["1.1.0", "1.0.0"]
    assert (page.json["total"], page.json["limit"], page.json["offset"]) == (3, 2, 1)
    none = client.get("/api/v1/releases?product=other-pump", headers=reviewer).json
    assert (none["releases"], none["total"]) == ([], 0)
    assert client.get("/api/v1/releases").status_code == 401
    for query in ("limit=0", "limit=x", "offset=-1", "product=Not_Valid", "colour=red"):
        r = client.get(f"/api/v1/releases?{query}", headers=reviewer)
        assert r.status_code == 400, query
        assert r.json["error"]["message"]


# ------------------------------------------------------------- concurrency
def _bundles_on_the_same_state(server_env: ServerEnv, n: int) -> list[Path]:
    """n valid, fully signed bundles, all built against the current repository."""
    env = _server_repo(server_env)
    out = []
    for i in range(n):
        path = env.work / f"same-state-{i}.tar"
        create_release(
            repo=env.repo,
            product="sigma-spectrum",
            version=f"2.0.{i}",
            release_counter=10 + i,
            hardware_ids=["rev-b"],
            firmware=env.firmware(f"2.0.{i}"),
            out=path,
            tar=True,
        )
        from signer.bundle import sign_bundle

        for name in ("re1", "qa1"):
            sign_bundle(path, env.signer(name))
        out.append(path)
    return out


@pytest.fixture
def unbounded_uploads(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests race publishes, not uploads: every upload gets a slot."""
    monkeypatch.setattr(releases, "MAX_UPLOADS", 16)
    monkeypatch.setattr(releases, "MAX_UPLOADS_PER_TOKEN", 16)


def _publish_concurrently(app: Flask, bundles: list[Path], headers: dict[str, str]) -> list[Any]:
    barrier = threading.Barrier(len(bundles))
    results: list[Any] = [None] * len(bundles)

    def run(i: int) -> None:
        client = app.test_client()
        data = bundles[i].read_bytes()
        barrier.wait()
        r = client.post("/api/v1/releases", data=data, headers={**headers, "Content-Type": TAR})
        results[i] = (r.status_code, r.json)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bundles))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def _assert_one_winner(server_env: ServerEnv, results: list[Any], n: int) -> None:
    codes = sorted(code for code, _ in results)
    assert codes == [201] + [422] * (n - 1), results
    for code, body in results:
        if code == 422:
            assert "is not the next version" in body["error"]["message"], body
    (winner,) = [body for code, body in results if code == 201]
    repo = Repository(server_env.repo_dir)
    assert repo_status(repo).errors == []
    assert [r.version for r in repo.releases("sigma-spectrum")] == [winner["version"]]
    state = repo.state()
    assert state.product_versions["sigma-spectrum"] == 1
    assert not (server_env.repo_dir / "metadata/2.sigma-spectrum.json").exists()
    # One snapshot and timestamp per publish: init wrote v1, add-product v2.
    assert state.timestamp is not None and state.timestamp.signed.version == 3
    assert _counts(server_env) == (1, 1)


@pytest.mark.usefixtures("unbounded_uploads")
def test_concurrent_publishes_built_on_the_same_state_serialise_one_wins(
    app: Flask, server_env: ServerEnv, engineer: dict[str, str]
) -> None:
    n = 6
    bundles = _bundles_on_the_same_state(server_env, n)
    _assert_one_winner(server_env, _publish_concurrently(app, bundles, engineer), n)


@pytest.mark.usefixtures("unbounded_uploads")
def test_concurrent_publishes_serialise_on_the_database_lock_alone(
    app: Flask, server_env: ServerEnv, engineer: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two servers sharing a repository on storage where file locks do nothing.

    The repository's file lock is disabled and every verification made slow,
    so without the database lock every publish would read the same state,
    pass, and overwrite the others' metadata.
    """
    monkeypatch.setattr(signer.repository, "exclusive_lock", lambda _path: contextlib.nullcontext())
    real_verify = signer.repository.verify_release_update
    inside = 0
    overlap: list[int] = []
    guard = threading.Lock()

    def slow_verify(**kwargs: Any) -> Any:
        nonlocal inside
        with guard:
            inside += 1
            overlap.append(inside)
        try:
            time.sleep(0.3)
            return real_verify(**kwargs)
        finally:
            with guard:
                inside -= 1

    monkeypatch.setattr(signer.repository, "verify_release_update", slow_verify)
    n = 4
    bundles = _bundles_on_the_same_state(server_env, n)
    results = _publish_concurrently(app, bundles, engineer)
    assert max(overlap) == 1, "two publishes verified at the same time"
    _assert_one_winner(server_env, results, n)


def test_publish_waits_for_a_held_publish_lock(
    app: Flask, server_env: ServerEnv, engineer: dict[str, str]
) -> None:
    bundle = _server_repo(server_env).bundle("1.0.0", 1, tar=True)
    factory = app.extensions["pumpguard.db"]
    done = threading.Event()
    result: list[int] = []

    def post() -> None:
        result.append(_post(app.test_client(), bundle, engineer).status_code)
        done.set()

    with publishing.locked_session(factory, "test holds the lock"):
        thread = threading.Thread(target=post)
        thread.start()
        assert not done.wait(1.0), "published while another transaction held the lock"
        assert not (server_env.repo_dir / "metadata/1.sigma-spectrum.json").exists()
    assert done.wait(60)
    thread.join()
    assert result == [201]


def _failing_commits(monkeypatch: pytest.MonkeyPatch, times: int | None = None) -> list[str]:
    """Once the repository is published (timestamp.json replaced), make the next
    ``times`` commits (all if None) fail as if the database died right then.

    The publish's own commit is the first; the upload record, committed
    before the repository was written, survives. Nothing is committed; the
    caller's rollback discards the transaction. Returns the list the failed
    commits are recorded in.
    """
    real_commit = SessionTransaction.commit
    real_publish = Repository.publish
    published: list[bool] = []
    failed: list[str] = []

    def publish(self: Repository, *args: Any, **kwargs: Any) -> Any:
        result = real_publish(self, *args, **kwargs)
        published.append(True)
        return result

    def commit(self: SessionTransaction, *args: Any, **kwargs: Any) -> None:
        if published and (times is None or len(failed) < times):
            failed.append("commit")
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))
        real_commit(self, *args, **kwargs)

    monkeypatch.setattr(Repository, "publish", publish)
    # Sessions are sessionmaker.begin() blocks: their commit is the transaction's.
    monkeypatch.setattr(SessionTransaction, "commit", commit)
    return failed


def _assert_indexed_and_audited_as_the_engineers(server_env: ServerEnv, listing: Any) -> None:
    """The release was reconciled with its upload record: the engineer's token
    published it, re1 and qa1 signed it, and the audit entry says so."""
    keyids = sorted(load_public_key(server_env.repo.pub(n)).keyid for n in ("re1", "qa1"))
    engine = engine_for(server_env.database_url)
    try:
        with sessionmaker(engine).begin() as s:
            token = s.execute(
                select(ApiToken).where(ApiToken.name == f"release-engineer {PRODUCT}")
            ).scalar_one()
            actor = f"token:{token.id}:{token.name}"
            verify_chain(s)
            entry = s.execute(select(AuditEntry).order_by(AuditEntry.seq.desc())).scalars().first()
            assert entry is not None
            assert (entry.actor, entry.action) == (actor, "release.publish")
            assert entry.detail["version"] == "1.0.0"
            assert entry.detail["release_counter"] == 1
            assert entry.detail["signers"] == keyids
            assert entry.detail["token_id"] == token.id
            assert entry.detail["reconciled"] is True
            assert not s.execute(
                select(AuditEntry).where(AuditEntry.action == "release.reindex")
            ).first()
    finally:
        engine.dispose()
    (release,) = listing["releases"]
    assert release["version"] == "1.0.0"
    assert release["published_by"] == actor
    assert release["signed_by"] == keyids


def _listed(client: FlaskClient, headers: dict[str, str]) -> list[tuple[str, str]]:
    listing = client.get("/api/v1/releases", headers=headers).json
    return [(x["version"], x["published_by"]) for x in listing["releases"]]


def _audit_actions(server_env: ServerEnv) -> list[str]:
    engine = engine_for(server_env.database_url)
    try:
        with sessionmaker(engine).begin() as s:
            verify_chain(s)
            return list(s.execute(select(AuditEntry.action).order_by(AuditEntry.seq)).scalars())
    finally:
        engine.dispose()


def test_publish_that_fails_in_the_database_leaves_the_repository_unchanged(
    client: FlaskClient,
    server_env: ServerEnv,
    tree: Tree,
    engineer: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The audit entry cannot be written (e.g. it lost a race): the release must
    not become visible, or it would be live but unindexed, unaudited, and its
    metadata version used up so that sending it again is refused."""

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise IntegrityError("INSERT INTO audit_log", {}, Exception("duplicate key"))

    bundle = _server_repo(server_env).bundle("1.0.0", 1, tar=True)
    monkeypatch.setattr(publishing.audit, "append", broken)
    with _unchanged(server_env, tree):
        r = _post(client, bundle, engineer)
        assert r.status_code == 500
        assert r.json["error"]["message"] == "recording the release failed; nothing was published"
    assert Repository(server_env.repo_dir).releases("sigma-spectrum") == []
    monkeypatch.undo()

    # The same bundle goes in when the database works again.
    r = _post(client, bundle, engineer)
    assert r.status_code == 201, r.json
    assert _listed(client, engineer) == [("1.0.0", r.json["published_by"])]
    assert _counts(server_env) == (1, 1)


def test_publish_that_fails_in_the_repository_leaves_no_index_row_or_audit_entry(
    client: FlaskClient,
    server_env: ServerEnv,
    engineer: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rows are written before the repository; a failed write rolls them back."""

    def full(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    timestamp = (server_env.repo_dir / "metadata/timestamp.json").read_bytes()
    actions = _audit_actions(server_env)
    monkeypatch.setattr(Repository, "_publish_online", full)
    r = _post(client, _server_repo(server_env).bundle("1.0.0", 1, tar=True), engineer)
    assert r.status_code == 500
    assert r.json["error"]["code"] == "server_error"
    assert (server_env.repo_dir / "metadata/timestamp.json").read_bytes() == timestamp
    assert _counts(server_env) == (0, 0)
    assert _audit_actions(server_env) == actions


def test_database_failure_answers_a_generic_500_and_logs_the_statement(
    client: FlaskClient,
    server_env: ServerEnv,
    engineer: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Statements and their parameters are for the operator's log, not the client."""
    statement = "INSERT INTO releases (product, version) VALUES (%(product)s, %(version)s)"

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise DataError(statement, {"version": "p4ram-value"}, Exception("value too long"))

    monkeypatch.setattr(publishing.audit, "append", broken)
    r = _post(client, _server_repo(server_env).bundle("1.0.0", 1, tar=True), engineer)
    assert r.status_code == 500
    assert r.json["error"]["code"] == "server_error"
    body = r.get_data(as_text=True)
    for leak in ("INSERT", "releases (", "p4ram-value", "value too long"):
        assert leak not in body, body
    assert statement in caplog.text
    assert "p4ram-value" in caplog.text


def test_release_whose_commit_fails_after_publishing_is_indexed_at_once(
    client: FlaskClient,
    server_env: ServerEnv,
    engineer: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database dies between the repository write and the commit (the one
    window left): the client hears so, and the index is repaired right away."""
    failed = _failing_commits(monkeypatch, times=1)
    r = _post(client, _server_repo(server_env).bundle("1.0.0", 1, tar=True), engineer)
    assert failed == ["commit"]
    assert r.status_code == 500
    assert "after it was published" in r.json["error"]["message"]
    assert "COMMIT" not in r.get_data(as_text=True)
    monkeypatch.undo()
    assert [x.version for x in Repository(server_env.repo_dir).releases("sigma-spectrum")] == [
        "1.0.0"
    ]
    listing = client.get("/api/v1/releases", headers=engineer).json
    _assert_indexed_and_audited_as_the_engineers(server_env, listing)


def test_release_published_but_not_recorded_is_indexed_by_the_next_refresher_tick(
    app: Flask,
    client: FlaskClient,
    server_env: ServerEnv,
    engineer: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database stays down after the commit failed, so indexing at once fails
    too; the running server indexes the release on its next refresher tick."""
    _failing_commits(monkeypatch)
    r = _post(client, _server_repo(server_env).bundle("1.0.0", 1, tar=True), engineer)
    assert r.status_code == 500
    assert "after it was published" in r.json["error"]["message"]
    monkeypatch.undo()
    assert _counts(server_env) == (0, 0)
    assert _listed(client, engineer) == []

    scheduler = RefreshScheduler(
        app.config["PUMPGUARD"],
        app.extensions["pumpguard.db"],
        lambda: publishing.online_signers(app),
        interval=60,
    )
    scheduler.tick()
    assert scheduler.errors == 0
    listing = client.get("/api/v1/releases", headers=engineer).json
    _assert_indexed_and_audited_as_the_engineers(server_env, listing)


def test_release_published_but_not_recorded_is_indexed_at_the_next_start(
    app: Flask,
    client: FlaskClient,
    server_env: ServerEnv,
    engineer: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database fails after the repository published (crash window): no 201,
    the release is visible to pumps, and the next start indexes it."""
    _failing_commits(monkeypatch)
    r = _post(client, _server_repo(server_env).bundle("1.0.0", 1, tar=True), engineer)
    assert r.status_code == 500
    assert "recording the release failed" in r.json["error"]["message"]
    assert [x.version for x in Repository(server_env.repo_dir).releases("sigma-spectrum")] == [
        "1.0.0"
    ]
    monkeypatch.undo()
    assert _counts(server_env) == (0, 0)

    restarted = create_app(server_env.config())
    try:
        listing = restarted.test_client().get("/api/v1/releases", headers=engineer).json
        _assert_indexed_and_audited_as_the_engineers(server_env, listing)
    finally:
        dispose(restarted)


# ---------------------------------------------------------- column limits
def test_overlong_version_is_refused_before_anything_is_written(
    client: FlaskClient, server_env: ServerEnv, tree: Tree, engineer: dict[str, str]
) -> None:
    """A valid semantic version longer than the index column: refused as 422,
    not published first and then failed in the database."""
    env = _server_repo(server_env)
    overlong = "1.0.0-" + "a" * 59  # 65 characters
    with _unchanged(server_env, tree):
        r = _post(client, env.bundle(overlong, 1, tar=True), engineer)
        assert r.status_code == 422, r.json
        assert r.json["error"]["code"] == "refused"
        assert "at most 64" in r.json["error"]["message"]
    longest = "1.0.0-" + "a" * 58  # 64 characters fit
    r = _post(client, env.bundle(longest, 1, tar=True), engineer)
    assert r.status_code == 201, r.json
    assert _listed(client, engineer) == [(longest, r.json["published_by"])]


def test_token_with_the_longest_name_publishes_and_is_audited(
    client: FlaskClient, server_env: ServerEnv
) -> None:
    """A 128-character token name is allowed; the audit actor still fits its column."""
    name = "n" * 128
    engine = engine_for(server_env.database_url)
    try:
        with sessionmaker(engine).begin() as s:
            token, secret = create_token(s, name, "release-engineer", ("sigma-spectrum",))
            token_id = token.id
    finally:
        engine.dispose()
    r = _post(client, _server_repo(server_env).bundle("1.0.0", 1, tar=True), _auth(secret))
    assert r.status_code == 201, r.json
    actor = r.json["published_by"]
    assert actor.startswith(f"token:{token_id}:nnn")
    assert len(actor) == 128
    engine = engine_for(server_env.database_url)
    try:
        with sessionmaker(engine).begin() as s:
            verify_chain(s)
            entry = s.execute(
                select(AuditEntry).where(AuditEntry.action == "release.publish")
            ).scalar_one()
            assert entry.actor == actor
    finally:
        engine.dispose()
