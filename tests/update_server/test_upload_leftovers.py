"""A killed or failed upload leaves nothing, and no error names a server path (finding 7).

Threat SRV-DOS: every kill during an upload used to leave its spool file,
the unpacked bundle and temp files (5.1 GB after 24 kills of 256 MiB
publishes), and nothing cleaned them at start-up. API errors named absolute
server paths.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import sessionmaker
from upload_support import (
    PRODUCT,
    Upload,
    gunicorn,
    make_token,
    member,
    member_headers,
    send_until_answered,
    upload_head,
)

from repo_support import RepoEnv
from server_support import ServerEnv
from signer.bundle import create_release, sign_bundle
from tmpfs_support import tmpfs
from update_server import create_app, publishing
from update_server.db import dispose, engine_for

MIB = 1 << 20
TAR = "application/x-tar"


def _uploads(server_env: ServerEnv) -> list[Path]:
    root = server_env.data_dir / "uploads"
    return sorted(root.iterdir()) if root.exists() else []


def _files(server_env: ServerEnv) -> list[Path]:
    root = server_env.data_dir / "uploads"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _server_repo(server_env: ServerEnv) -> RepoEnv:
    return RepoEnv(server_env.repo_dir, server_env.repo.keys, server_env.repo.work)


@contextlib.contextmanager
def _mid_body(server_env: ServerEnv, port: int, token: str) -> Iterator[None]:
    """An upload whose firmware is being unpacked: 8 of its 64 MiB sent."""
    head = upload_head(token, 512 + 64 * MIB + 1024)
    upload = Upload.start(port, head, member("firmware.img", 64 * MIB) + bytes(8 * MIB))
    try:
        _wait_for(
            lambda: any(p.stat().st_size >= 4 * MIB for p in _files(server_env)),
            "the firmware to be unpacked",
        )
        yield
    finally:
        upload.close()


@contextlib.contextmanager
def _waiting_for_the_publish_lock(server_env: ServerEnv, port: int, token: str) -> Iterator[None]:
    """A whole bundle received and unpacked, its publish waiting for the lock."""
    engine = engine_for(server_env.database_url)
    data = server_env.repo.bundle("1.0.0", 1, tar=True).read_bytes()
    try:
        with publishing.locked_session(sessionmaker(engine), "test holds the lock"):
            upload = Upload.start(port, upload_head(token, len(data)), data)
            try:
                _wait_for(
                    lambda: any(p.name == "sbom.cdx.json" for p in _files(server_env)),
                    "the bundle to be unpacked",
                )
                time.sleep(0.5)  # into the record's write or the lock's wait
                yield
            finally:
                upload.close()
    finally:
        engine.dispose()


@pytest.mark.parametrize("killed", [_mid_body, _waiting_for_the_publish_lock])
def test_a_killed_upload_leaves_nothing_once_the_server_restarts(
    server_env: ServerEnv, killed: Callable[..., contextlib.AbstractContextManager[None]]
) -> None:
    token = make_token(server_env, "release-engineer", (PRODUCT,))
    with (
        gunicorn(server_env, "--workers", "1", "--timeout", "120") as server,
        killed(server_env, server.port, token),
    ):
        server.kill()  # SIGKILL to master and worker: no clean-up code runs
    left = _files(server_env)
    assert left, "the kill left nothing to clean (the test did not kill mid-upload)"
    with gunicorn(server_env, "--workers", "1") as server:
        assert _uploads(server_env) == [], f"left after the restart: {_uploads(server_env)}"
        # The killed worker's upload slots died with it.
        data = server_env.repo.bundle("1.0.1", 2, tar=True).read_bytes()
        r = send_until_answered(server.port, upload_head(token, len(data)), [data])
        assert r.status == 201, r
    assert _uploads(server_env) == []


def test_the_start_up_clean_up_spares_an_upload_in_flight_in_another_process(
    server_env: ServerEnv,
) -> None:
    """A second worker starting (here: a second app on the same data folder)
    while the first unpacks an upload removes nothing of it; the upload then
    completes."""
    token = make_token(server_env, "release-engineer", (PRODUCT,))
    data = server_env.repo.bundle("1.0.0", 1, tar=True).read_bytes()
    with gunicorn(server_env, "--workers", "1") as server:
        # All but the end-of-archive blocks: the server waits for them.
        upload = Upload.start(server.port, upload_head(token, len(data)), data[:-1024])
        try:
            _wait_for(
                lambda: any(p.name == "sbom.cdx.json" for p in _files(server_env)),
                "the bundle to be unpacked",
            )
            before = _files(server_env)
            second = create_app(server_env.config())
            dispose(second)
            from update_server import spool

            assert spool.sweep(server_env.data_dir) == 0
            assert _files(server_env) == before
            upload.send(data[-1024:])
            status, _, body = upload.answer()
            assert status == 201, body
        finally:
            upload.close()
    assert _uploads(server_env) == []


def _tar(members: dict[str, bytes | None]) -> bytes:
    """A tar of these members (None: a directory)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


MANIFEST = json.dumps(
    {
        "format": "pumpguard-release-bundle",
        "format_version": 1,
        "product": PRODUCT,
        "version": "1.0.0",
    }
).encode()


def test_a_failed_upload_leaves_nothing(server_env: ServerEnv) -> None:
    env = _server_repo(server_env)
    engineer = make_token(server_env, "release-engineer", (PRODUCT,))
    both = make_token(server_env, "release-engineer", ("other-pump", PRODUCT))
    valid = env.bundle("1.0.0", 1, tar=True).read_bytes()
    one_signature = env.bundle("1.0.1", 2, signers=("re1",), tar=True).read_bytes()
    cases: list[tuple[str, str, str, bytes, int, str]] = [
        ("not a tar", engineer, PRODUCT, b"\x01" * 4096, 422, "not a tar archive"),
        ("a thousand members", engineer, PRODUCT, b"".join(member_headers(1000)), 422,
         "more than 64 members"),
        ("no bundle.json", engineer, PRODUCT, _tar({"x": b"x"}), 422, "no bundle.json"),
        ("not the declared product", both, "other-pump", valid, 422,
         "declared product other-pump"),
        ("one signature of two", engineer, PRODUCT, one_signature, 422,
         "signed by 1 of the 2 required keys"),
    ]  # fmt: skip
    with gunicorn(server_env, "--workers", "1") as server:
        for case, token, product, body, status, message in cases:
            head = upload_head(token, len(body), f"?product={product}")
            answer = send_until_answered(server.port, head, [body])
            assert answer.status == status, (case, answer)
            assert message in answer.body["error"]["message"], (case, answer)
            # Removed before the answer was sent.
            assert _uploads(server_env) == [], case
        # The client gives up half-way: the server removes what it unpacked.
        upload = Upload.start(server.port, upload_head(engineer, len(valid)), valid[:3000])
        _wait_for(lambda: bool(_files(server_env)), "the upload to start")
        upload.close()
        _wait_for(lambda: _uploads(server_env) == [], "the abandoned upload to be removed")
        # Nothing above used up a slot: the valid bundle still goes in.
        r = send_until_answered(server.port, upload_head(engineer, len(valid)), [valid])
        assert r.status == 201, r
    assert _uploads(server_env) == []


def _leaks(server_env: ServerEnv, text: str) -> list[str]:
    """The server paths ``text`` names."""
    paths = {str(server_env.data_dir), str(server_env.data_dir.resolve()), "/tmp/", "pytest-of"}
    return sorted(p for p in paths if p in text)


def test_errors_of_bad_uploads_name_no_server_path(
    client: FlaskClient, server_env: ServerEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = {
        "Authorization": f"Bearer {make_token(server_env, 'release-engineer', (PRODUCT,))}",
        "Content-Type": TAR,
    }
    cases = [
        ("not a tar", b"\x01" * 4096, "not a tar archive"),
        ("no bundle.json", _tar({"x": b"x"}), "no bundle.json"),
        (
            "metadata that is a directory",
            _tar({"bundle.json": MANIFEST, f"metadata/{PRODUCT}.json": None}),
            "Is a directory",
        ),
    ]
    for case, body, message in cases:
        r = client.post(f"/api/v1/releases?product={PRODUCT}", data=body, headers=headers)
        assert r.status_code == 422, (case, r.json)
        assert message in r.json["error"]["message"], (case, r.json)
        assert _leaks(server_env, r.get_data(as_text=True)) == [], (case, r.json)
    # The online keys cannot be loaded (no passphrase): the key file's path
    # is for the log.
    bundle = _server_repo(server_env).bundle("1.0.0", 1, tar=True).read_bytes()
    monkeypatch.delenv("PUMPGUARD_PASSPHRASE")
    app = create_app(server_env.config())  # one that has not loaded them yet
    try:
        r = app.test_client().post(
            f"/api/v1/releases?product={PRODUCT}", data=bundle, headers=headers
        )
    finally:
        dispose(app)
    assert r.status_code == 500, r.json
    assert r.json["error"]["message"] == "the online keys cannot be loaded; the server log says why"
    assert _leaks(server_env, r.get_data(as_text=True)) == []


def test_an_upload_that_fills_the_disk_is_a_500_naming_no_path_and_leaves_nothing(
    client: FlaskClient, server_env: ServerEnv
) -> None:
    env = _server_repo(server_env)
    firmware = env.firmware("1.0.0", size=3 * MIB)
    bundle = env.work / "big.tar"
    create_release(
        repo=env.repo,
        product=PRODUCT,
        version="1.0.0",
        release_counter=1,
        hardware_ids=["rev-b"],
        firmware=firmware,
        out=bundle,
        tar=True,
    )
    for name in ("re1", "qa1"):
        sign_bundle(bundle, env.signer(name))
    headers = {
        "Authorization": f"Bearer {make_token(server_env, 'release-engineer', (PRODUCT,))}",
        "Content-Type": TAR,
    }
    with tmpfs(server_env.data_dir / "uploads", size=MIB) as uploads:
        r = client.post(
            f"/api/v1/releases?product={PRODUCT}", data=bundle.read_bytes(), headers=headers
        )
        assert r.status_code == 500, r.json
        assert r.json["error"]["code"] == "server_error"
        assert "No space left on device" in r.json["error"]["message"]
        assert _leaks(server_env, r.get_data(as_text=True)) == []
        assert list(uploads.iterdir()) == []
    # With room again, the same bundle goes in.
    r = client.post(
        f"/api/v1/releases?product={PRODUCT}", data=bundle.read_bytes(), headers=headers
    )
    assert r.status_code == 201, r.json
    assert _uploads(server_env) == []
