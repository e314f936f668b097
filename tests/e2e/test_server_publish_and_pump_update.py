"""The whole path over real HTTP on loopback: release engineers publish through the
server's API, pumps running python-tuf's ngclient update from the server's /tuf.

Runs on SQLite and on PostgreSQL, like the server suite.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy.orm import sessionmaker
from tuf.ngclient import Updater

from pumpguard.release import ReleaseInfo
from repo_support import PRODUCT, CliResult, RepoEnv
from sbom import bound_firmware_sha256
from server_support import ServerEnv, live_server
from signer._upload import upload_bundle
from signer.bundle import publish_bundle
from signer.repository import Repository
from signer.status import repo_status
from update_server import create_app
from update_server.auth import create_token
from update_server.db import dispose, engine_for


@pytest.fixture
def server(server_env: ServerEnv) -> Iterator[str]:
    """The server on loopback; yields its base URL."""
    app: Flask = create_app(server_env.config())
    try:
        with live_server(app) as base:
            yield base
    finally:
        dispose(app)


@pytest.fixture
def token(server_env: ServerEnv, monkeypatch: pytest.MonkeyPatch) -> str:
    """A sigma-spectrum release engineer's token, also in PUMPGUARD_TOKEN."""
    engine = engine_for(server_env.database_url)
    try:
        with sessionmaker(engine).begin() as s:
            _, secret = create_token(s, "carol", "release-engineer", [PRODUCT])
    finally:
        engine.dispose()
    monkeypatch.setenv("PUMPGUARD_TOKEN", secret)
    return secret


def _server_repo(server_env: ServerEnv, work: Path | None = None) -> RepoEnv:
    return RepoEnv(server_env.repo_dir, server_env.repo.keys, work or server_env.repo.work)


def _pump(server_env: ServerEnv, base: str, client_dir: Path) -> Updater:
    """A pump: ships root v1 (never trust-on-first-use), keeps its metadata in client_dir."""
    (client_dir / "metadata").mkdir(parents=True, exist_ok=True)
    (client_dir / "downloads").mkdir(exist_ok=True)
    return Updater(
        metadata_dir=str(client_dir / "metadata"),
        metadata_base_url=f"{base}/tuf/metadata/",
        target_dir=str(client_dir / "downloads"),
        target_base_url=f"{base}/tuf/targets/",
        bootstrap=(server_env.repo_dir / "metadata/1.root.json").read_bytes(),
    )


def test_two_person_release_published_through_the_api_is_installed_by_a_tuf_client(
    server_env: ServerEnv, server: str, token: str, run_cli: Callable[..., CliResult]
) -> None:
    env = _server_repo(server_env)

    # One engineer alone cannot publish: the CLI says why in one line, exit 4.
    lonely = env.bundle("0.9.0", 1, signers=("re1",))
    r = run_cli("release", "publish", lonely, "--server", server)
    assert r.code == 4, r.err
    assert r.err.strip().count("\n") == 0
    assert "signed by 1 of the 2 required keys" in r.err

    # A wrong token: exit 2, nothing uploaded.
    r = run_cli("release", "publish", lonely, "--server", server, "--token-env", "NO_SUCH_VAR")
    assert r.code == 2 and "NO_SUCH_VAR" in r.err

    # RE + QA sign a directory bundle; the CLI packs and uploads it.
    bundle = env.bundle("1.0.0", 7, hardware_ids=("rev-b", "rev-c"))
    r = run_cli("release", "publish", bundle, "--server", server, "--json")
    assert r.code == 0, r.err
    published = json.loads(r.out)
    assert (published["product"], published["version"]) == (PRODUCT, "1.0.0")
    assert published["release_counter"] == 7
    assert len(published["signed_by"]) == 2

    updater = _pump(server_env, server, server_env.repo.work / "pump")
    updater.refresh()
    info = updater.get_targetinfo(f"{PRODUCT}/1.0.0/firmware.img")
    assert info is not None
    release = ReleaseInfo.from_custom(info.custom, info.path)
    assert release.release_counter == 7
    assert release.hardware_ids == ("rev-b", "rev-c")
    assert release.notes == "release 1.0.0"
    firmware = Path(updater.download_target(info)).read_bytes()
    assert firmware == env.firmware("1.0.0").read_bytes()
    assert hashlib.sha256(firmware).hexdigest() == published["firmware"]["sha256"]
    sbom_info = updater.get_targetinfo(release.sbom_path)
    assert sbom_info is not None
    sbom = Path(updater.download_target(sbom_info)).read_bytes()
    assert hashlib.sha256(sbom).hexdigest() == release.sbom_sha256
    assert bound_firmware_sha256(sbom) == hashlib.sha256(firmware).hexdigest()

    # A .tar bundle; the text output names the release.
    r = run_cli("release", "publish", env.bundle("1.1.0", 8, tar=True), "--server", server)
    assert r.code == 0, r.err
    assert f"published {PRODUCT} 1.1.0 (counter 8) on {server}" in r.out

    # The same upload with the progress bar (rich, on stderr) drawn.
    release = upload_bundle(env.bundle("1.2.0", 9, tar=True), server, token, progress=True)
    assert release["version"] == "1.2.0"


def test_publish_command_checks_its_options_before_uploading(
    server_env: ServerEnv, token: str, run_cli: Callable[..., CliResult]
) -> None:
    bundle = _server_repo(server_env).bundle("1.0.0", 1)
    for args, message in [
        (("--server", "http://updates.example.com"), "use https"),
        (("--server", "ftp://127.0.0.1"), "must be an http(s) URL"),
        (("--server", "https://127.0.0.1:1", "--repo", server_env.repo_dir), "exactly one of"),
        ((), "exactly one of"),
        (("--repo", server_env.repo_dir), "needs --snapshot-key and --timestamp-key"),
        (
            ("--server", "https://127.0.0.1:1", "--snapshot-key", "k", "--timestamp-key", "k"),
            "go with --repo",
        ),
    ]:
        r = run_cli("release", "publish", bundle, *args)
        assert r.code == 2, (args, r.err)
        assert message in r.err, (args, r.err)
    # Nothing reached the repository.
    assert Repository(server_env.repo_dir).releases(PRODUCT) == []


def _prebuild(server_env: ServerEnv, n: int, tmp_path: Path) -> list[Path]:
    """n bundles, each built on the repository the previous one leads to.

    Built and published in a scratch copy of the server's repository, so the
    server receives exactly the sequence release engineers would send.
    """
    scratch = tmp_path / "scratch"
    shutil.copytree(server_env.repo_dir, scratch, ignore=shutil.ignore_patterns(".lock"))
    work = tmp_path / "bundles"
    work.mkdir()
    env = RepoEnv(scratch, server_env.repo.keys, work)
    bundles = []
    for i in range(n):
        bundle = env.bundle(f"2.0.{i}", i + 1, tar=True)
        publish_bundle(bundle, env.repo, env.online)
        bundles.append(bundle)
    return bundles


def test_pumps_polling_during_50_publishes_never_fail_verification(
    server_env: ServerEnv, server: str, token: str, tmp_path: Path
) -> None:
    n = 50
    bundles = _prebuild(server_env, n, tmp_path)
    final = f"{PRODUCT}/2.0.{n - 1}/firmware.img"
    published: list[str] = []  # versions whose publish returned 201, in order
    errors: list[str] = []
    finished = threading.Event()
    polls = [0] * 4
    seen_final = [False] * 4

    def pump(k: int) -> None:
        home = tmp_path / f"pump-{k}"
        loop = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not seen_final[k]:
            loop += 1
            # Pump 0 is factory-fresh on every poll; the others keep their
            # trusted metadata between polls like a pump in the field.
            client = home / f"fresh-{loop}" if k == 0 else home
            must_see = published[-1] if published else None
            try:
                updater = _pump(server_env, server, client)
                updater.refresh()
                if must_see is not None:
                    # Anything published before this poll began is visible.
                    info = updater.get_targetinfo(f"{PRODUCT}/{must_see}/firmware.img")
                    if info is None:
                        errors.append(f"pump {k}: {must_see} published but not visible")
                        return
                    ReleaseInfo.from_custom(info.custom, info.path)
                    updater.download_target(info, str(client / "fw.img"))
                    seen_final[k] = updater.get_targetinfo(final) is not None
                # Before the first release the product role has no metadata
                # yet and ngclient refuses to look into it; top-level only.
            except Exception as e:
                errors.append(f"pump {k} poll {loop}: {type(e).__name__}: {e}")
                return
            finally:
                if k == 0:
                    shutil.rmtree(client, ignore_errors=True)
            polls[k] += 1

    threads = [threading.Thread(target=pump, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    started = time.monotonic()
    for i, bundle in enumerate(bundles):
        release = upload_bundle(bundle, server, token, progress=False)
        assert release["version"] == f"2.0.{i}"
        published.append(release["version"])
    publish_seconds = time.monotonic() - started
    finished.set()
    for t in threads:
        t.join(120)

    assert errors == []
    assert all(seen_final), (seen_final, polls)
    assert min(polls) >= 2, polls
    repo = Repository(server_env.repo_dir)
    assert repo_status(repo).errors == []
    assert repo.releases(PRODUCT)[-1].version == f"2.0.{n - 1}"
    print(f"{n} publishes in {publish_seconds:.1f} s; pump polls {polls}")
