"""Every refusal of `release publish` leaves the repository byte-for-byte as it was."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, TargetFile

from pumpguard.release import ReleaseInfo
from repo_support import RepoEnv
from sbom import build_firmware_sbom
from signer.bundle import publish_bundle, sign_bundle
from signer.errors import (
    BundleError,
    HashMismatchError,
    KeyLoadError,
    PathOutsideDelegationError,
    PublishRefusedError,
    RollbackError,
    SignerError,
    ThresholdError,
    UnknownProductError,
)
from signer.repository import OnlineSigners

Tree = Callable[[Path], dict[str, bytes]]


def _rewrite(env: RepoEnv, bundle: Path, edit: Callable[[Metadata, Path], None]) -> None:
    """Change a bundle's metadata, then let both release engineers sign it again."""
    md_path = next((bundle / "metadata").glob("*.json"))
    md = Metadata.from_bytes(md_path.read_bytes())
    edit(md, bundle)
    md.signatures.clear()
    md_path.write_bytes(md.to_bytes())
    for name in ("re1", "qa1"):
        md.sign(env.signer(name), append=True)
    md_path.write_bytes(md.to_bytes())


def _retarget(version: str, counter: int) -> Callable[[Metadata, Path], None]:
    """Move the bundle's release to another version/counter, consistently."""

    def edit(md: Metadata, bundle: Path) -> None:
        manifest = json.loads((bundle / "bundle.json").read_text())
        old = ReleaseInfo.from_custom(
            md.signed.targets[f"{manifest['product']}/{manifest['version']}/firmware.img"].custom
        )
        new = ReleaseInfo(
            old.product, version, counter, old.hardware_ids, old.sbom_sha256, old.notes
        )
        fw = md.signed.targets.pop(old.firmware_path)
        sbom = md.signed.targets.pop(old.sbom_path)
        md.signed.targets[new.firmware_path] = TargetFile(
            fw.length, fw.hashes, new.firmware_path, {"custom": new.to_custom()}
        )
        md.signed.targets[new.sbom_path] = TargetFile(sbom.length, sbom.hashes, new.sbom_path)
        shutil.move(
            bundle / "targets" / old.product / old.version,
            bundle / "targets" / old.product / version,
        )
        manifest["version"] = version
        (bundle / "bundle.json").write_text(json.dumps(manifest))

    return edit


def _add_outside_target(md: Metadata, bundle: Path) -> None:
    # Signed only: a bundle carrying the file would be refused earlier, for a
    # file outside the release its bundle.json names.
    md.signed.targets["other-pump/1.0.0/firmware.img"] = TargetFile.from_data(
        "other-pump/1.0.0/firmware.img", b"not ours"
    )


def _unbind_sbom(md: Metadata, bundle: Path) -> None:
    """Swap in a valid SBOM of other firmware, re-hashed everywhere it is named."""
    sbom = build_firmware_sbom(
        product="sigma-spectrum",
        version="1.0.0",
        firmware_name="firmware.img",
        firmware_sha256="0" * 64,
        firmware_size=1,
    )
    (bundle / "targets/sigma-spectrum/1.0.0/sbom.cdx.json").write_bytes(sbom)
    path = "sigma-spectrum/1.0.0/sbom.cdx.json"
    md.signed.targets[path] = TargetFile.from_data(path, sbom, ["sha256"])
    fw = md.signed.targets["sigma-spectrum/1.0.0/firmware.img"]
    custom = fw.custom
    custom["pumpguard"]["sbom"]["sha256"] = hashlib.sha256(sbom).hexdigest()


def _bump_existing_target(md: Metadata, bundle: Path) -> None:
    md.signed.targets["sigma-spectrum/1.0.0/firmware.img"].length += 1


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("one signature", ThresholdError, "signed by 1 of the 2 required keys"),
        ("outsider as second signer", ThresholdError, "keys the delegation does not name"),
        ("release counter not greater", RollbackError, "release_counter 1 is not greater than 1"),
        ("version not greater", RollbackError, "version 0.9.0 is not greater than published"),
        ("stale metadata version", RollbackError, "is not the next version"),
        ("firmware altered", HashMismatchError, "does not match the length and sha256"),
        (
            "path outside delegation",
            PathOutsideDelegationError,
            "outside sigma-spectrum's delegated",
        ),
        ("sbom not bound", HashMismatchError, "not the release's firmware"),
        ("published target changed", PublishRefusedError, "changes the published target"),
        ("extra file", BundleError, "files its metadata does not add"),
        ("wrong online key", KeyLoadError, "is not a snapshot key"),
    ],
)
def test_refused_publish_leaves_repository_unchanged(
    repo_env: RepoEnv, tree: Tree, case: str, error: type[SignerError], message: str
) -> None:
    env = repo_env
    online = env.online
    if case in {
        "release counter not greater",
        "version not greater",
        "stale metadata version",
        "published target changed",
    }:
        stale = env.bundle("1.1.0", 2)
        publish_bundle(env.bundle("1.0.0", 1), env.repo, online)
    bundle = env.bundle("2.0.0", 5, signers=("re1", "qa1"))

    if case == "one signature":
        bundle = env.bundle("2.0.1", 6, signers=("re1",))
    elif case == "outsider as second signer":
        bundle = env.bundle("2.0.1", 6, signers=("re1", "outsider"))
    elif case == "release counter not greater":
        _rewrite(env, bundle, _retarget("2.0.0", 1))
    elif case == "version not greater":
        _rewrite(env, bundle, _retarget("0.9.0", 9))
    elif case == "stale metadata version":
        bundle = stale
    elif case == "firmware altered":
        fw = bundle / "targets/sigma-spectrum/2.0.0/firmware.img"
        fw.write_bytes(b"X" + fw.read_bytes()[1:])
    elif case == "path outside delegation":
        _rewrite(env, bundle, _add_outside_target)
    elif case == "sbom not bound":
        bundle = env.bundle("1.0.0", 1, signers=())
        _rewrite(env, bundle, _unbind_sbom)
    elif case == "published target changed":
        _rewrite(env, bundle, _bump_existing_target)
    elif case == "extra file":
        (bundle / "targets/sigma-spectrum/2.0.0/backdoor.sh").write_bytes(b"#!/bin/sh\n")
    elif case == "wrong online key":
        online = OnlineSigners(env.signer("timestamp"), env.signer("timestamp"))

    before = tree(env.path)
    with pytest.raises(error, match=message):
        publish_bundle(bundle, env.repo, online)
    assert tree(env.path) == before


def test_refuses_unknown_product(repo_env: RepoEnv) -> None:
    with pytest.raises(UnknownProductError, match="no product 'other-pump'"):
        repo_env.bundle("1.0.0", 1, product="other-pump")


def test_refuses_tar_bundle_with_path_traversal(repo_env: RepoEnv, tree: Tree) -> None:
    evil = repo_env.work / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        for name, data in (("bundle.json", b"{}"), ("../../escape.txt", b"pwned")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    before = tree(repo_env.path)
    with pytest.raises(BundleError):
        publish_bundle(evil, repo_env.repo, repo_env.online)
    assert tree(repo_env.path) == before
    assert not (repo_env.work.parent / "escape.txt").exists()


def test_create_refuses_rollback_before_anyone_signs(repo_env: RepoEnv) -> None:
    publish_bundle(repo_env.bundle("1.0.0", 3), repo_env.repo, repo_env.online)
    with pytest.raises(RollbackError, match="release_counter 3 must be greater than 3"):
        repo_env.bundle("1.1.0", 3)
    with pytest.raises(RollbackError, match=r"version 0\.1\.0 must be greater"):
        repo_env.bundle("0.1.0", 4)


def test_signing_twice_with_one_key_counts_once(repo_env: RepoEnv, tree: Tree) -> None:
    bundle = repo_env.bundle("1.0.0", 1, signers=("re1",))
    sign_bundle(bundle, repo_env.signer("re1"))
    before = tree(repo_env.path)
    with pytest.raises(ThresholdError, match="1 of the 2"):
        publish_bundle(bundle, repo_env.repo, repo_env.online)
    assert tree(repo_env.path) == before


def test_refuses_tar_bundle_with_too_many_members(repo_env: RepoEnv, tree: Tree) -> None:
    """A bundle is a handful of files; thousands of members are a resource attack."""
    evil = repo_env.work / "many.tar"
    with tarfile.open(evil, "w") as tar:
        for i in range(100):
            info = tarfile.TarInfo(f"targets/x/{i}")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    before = tree(repo_env.path)
    with pytest.raises(BundleError, match="more than 64 members"):
        publish_bundle(evil, repo_env.repo, repo_env.online)
    assert tree(repo_env.path) == before
    assert not list(repo_env.work.glob(".pumpguard-bundle-*"))
