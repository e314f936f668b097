"""A real python-tuf client verifies published releases over loopback HTTP.

The pump's view: it ships root v1 (``bootstrap=``, never trust-on-first-use),
talks to a static file server, and must find, download and verify the firmware
with its release contract intact, also after root and product key rotations.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tuf.api.exceptions import BadVersionNumberError, RepositoryError, UnsignedMetadataError
from tuf.ngclient import Updater

from pumpguard.release import ReleaseInfo
from repo_support import RepoEnv
from sbom import bound_firmware_sha256
from signer.bundle import publish_bundle
from signer.keys import load_public_key


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(repo_env: RepoEnv) -> Iterator[str]:
    """A static HTTP server on loopback serving the repository directory."""
    handler = functools.partial(_QuietHandler, directory=str(repo_env.path))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _pump(repo_env: RepoEnv, base: str, name: str = "pump") -> Updater:
    client = repo_env.work / name
    (client / "metadata").mkdir(parents=True, exist_ok=True)
    (client / "downloads").mkdir(exist_ok=True)
    # The root the pump was manufactured with, fixed at the repository's start.
    bootstrap = (repo_env.path / "metadata" / "1.root.json").read_bytes()
    return Updater(
        metadata_dir=str(client / "metadata"),
        metadata_base_url=f"{base}/metadata/",
        target_dir=str(client / "downloads"),
        target_base_url=f"{base}/targets/",
        bootstrap=bootstrap,
    )


def _fetch_release(updater: Updater, version: str) -> tuple[ReleaseInfo, bytes, bytes]:
    updater.refresh()
    info = updater.get_targetinfo(f"sigma-spectrum/{version}/firmware.img")
    assert info is not None
    release = ReleaseInfo.from_custom(info.custom, info.path)
    firmware = Path(updater.download_target(info)).read_bytes()
    sbom_info = updater.get_targetinfo(release.sbom_path)
    assert sbom_info is not None
    sbom = Path(updater.download_target(sbom_info)).read_bytes()
    return release, firmware, sbom


def test_pump_downloads_and_verifies_published_firmware(repo_env: RepoEnv, server: str) -> None:
    publish_bundle(repo_env.bundle("1.0.0", 1), repo_env.repo, repo_env.online)
    publish_bundle(
        repo_env.bundle("1.1.0", 2, hardware_ids=("rev-b", "rev-c")), repo_env.repo, repo_env.online
    )

    release, firmware, sbom = _fetch_release(_pump(repo_env, server), "1.1.0")

    assert firmware == repo_env.firmware("1.1.0").read_bytes()
    assert release.release_counter == 2
    assert release.hardware_ids == ("rev-b", "rev-c")
    assert release.notes == "release 1.1.0"
    assert hashlib.sha256(sbom).hexdigest() == release.sbom_sha256
    assert bound_firmware_sha256(sbom) == hashlib.sha256(firmware).hexdigest()


def test_pump_follows_root_rotation(repo_env: RepoEnv, server: str) -> None:
    env = repo_env
    publish_bundle(env.bundle("1.0.0", 1), env.repo, env.online)
    pump = _pump(env, server)
    pump.refresh()
    # Replace root2 by root3 (threshold stays 2): v2 must carry root1+root2
    # (old threshold) and root1+root3 (new threshold).
    env.repo.rotate_root(
        add_keys=[load_public_key(env.pub("root3"))],
        remove_keyids=[load_public_key(env.pub("root2")).keyid],
        signers=[env.signer("root1"), env.signer("root2"), env.signer("root3")],
    )
    publish_bundle(env.bundle("1.1.0", 2), env.repo, env.online)

    # A pump already in the field and one fresh from the factory (root v1 only).
    for updater in (_pump(env, server), _pump(env, server, "factory-fresh")):
        release, firmware, _ = _fetch_release(updater, "1.1.0")
        assert release.version == "1.1.0"
        assert firmware == env.firmware("1.1.0").read_bytes()
    cached_root = env.work / "pump" / "metadata" / "root.json"
    assert b'"version":2' in cached_root.read_bytes().replace(b" ", b"")


def test_pump_follows_product_key_rotation(repo_env: RepoEnv, server: str) -> None:
    env = repo_env
    publish_bundle(env.bundle("1.0.0", 1), env.repo, env.online)
    env.repo.rotate_product(
        "sigma-spectrum",
        [load_public_key(env.pub("re2")), load_public_key(env.pub("qa1"))],
        2,
        [env.signer("targets"), env.signer("re2"), env.signer("qa1")],
        env.online,
    )
    # The current release stays verifiable under the new keys ...
    release, _, _ = _fetch_release(_pump(env, server), "1.0.0")
    assert release.version == "1.0.0"
    # ... and the retired key can no longer help sign a release.
    with pytest.raises(Exception, match="1 of the 2"):
        publish_bundle(env.bundle("1.1.0", 2, signers=("re1", "qa1")), env.repo, env.online)
    publish_bundle(env.bundle("1.1.1", 3, signers=("re2", "qa1")), env.repo, env.online)
    release, _, _ = _fetch_release(_pump(env, server), "1.1.1")
    assert release.release_counter == 3


def test_pump_rejects_root_signed_by_one_key_below_threshold(
    repo_env: RepoEnv, server: str
) -> None:
    """A root v2 signed by one key (threshold 2) is never accepted by a pump."""
    env = repo_env
    publish_bundle(env.bundle("1.0.0", 1), env.repo, env.online)
    from tuf.api.metadata import Metadata

    forged = Metadata.from_bytes((env.path / "metadata/1.root.json").read_bytes())
    forged.signed.version = 2
    forged.signatures.clear()
    forged.sign(env.signer("root1"))
    (env.path / "metadata/2.root.json").write_bytes(forged.to_bytes())
    with pytest.raises(UnsignedMetadataError):
        _pump(env, server).refresh()


def test_pump_rejects_replayed_older_timestamp(repo_env: RepoEnv, server: str) -> None:
    env = repo_env
    publish_bundle(env.bundle("1.0.0", 1), env.repo, env.online)
    old_timestamp = (env.path / "metadata/timestamp.json").read_bytes()
    publish_bundle(env.bundle("1.1.0", 2), env.repo, env.online)
    pump = _pump(env, server)
    pump.refresh()
    (env.path / "metadata/timestamp.json").write_bytes(old_timestamp)
    with pytest.raises((BadVersionNumberError, RepositoryError)):
        _pump(env, server).refresh()
