"""Publishing copies exactly the bytes it verified, into durable directories."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import signer.repository
from repo_support import RepoEnv
from signer.bundle import publish_bundle

_FIRMWARE = "targets/sigma-spectrum/1.0.0/firmware.img"


@pytest.mark.parametrize("same_length", [True, False], ids=["same-length", "other-length"])
def test_file_swapped_after_verification_is_not_published(
    repo_env: RepoEnv,
    monkeypatch: pytest.MonkeyPatch,
    tree: Callable[[Path], dict[str, bytes]],
    same_length: bool,
) -> None:
    """A bundle file changed after verification (threat SGN-BUNDLE-SWAP).

    The publish verifies the copies it makes inside the repository, hashed as
    they were written, and publishes those: the swapped bytes never reach the
    repository, and what pumps download is exactly what was verified.
    """
    env = repo_env
    bundle = env.bundle("1.0.0", 1)  # a directory bundle, signed by re1 and qa1
    firmware = bundle / _FIRMWARE
    original = firmware.read_bytes()
    size = len(original)
    verify = signer.repository.verify_release_update

    def racing(**kwargs: Any) -> Any:
        verified = verify(**kwargs)
        firmware.write_bytes(b"EVIL" * (size // 4 if same_length else size))
        return verified

    monkeypatch.setattr(signer.repository, "verify_release_update", racing)

    verified = publish_bundle(bundle, env.repo, env.online)

    target = verified.new_targets["sigma-spectrum/1.0.0/firmware.img"]
    (published,) = (env.path / "targets").rglob("*.firmware.img")
    assert published.name == f"{target.hashes['sha256']}.firmware.img"
    assert published.read_bytes() == original  # the verified bytes, not the swapped ones
    assert hashlib.sha256(published.read_bytes()).hexdigest() == target.hashes["sha256"]
    assert not [p for p in (env.path / "targets").rglob(".*") if p.is_file()]  # no temporaries


def test_each_release_file_is_read_once(repo_env: RepoEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """A publish opens each bundle file once: the copy it hashes is what it verifies."""
    env = repo_env
    bundle = env.bundle("1.0.0", 1)
    opened: list[str] = []
    real_open = Path.open

    def counting(self: Path, *args: Any, **kwargs: Any) -> Any:
        if bundle in self.parents and "targets" in self.parts:
            opened.append(self.relative_to(bundle).as_posix())
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting)
    publish_bundle(bundle, env.repo, env.online)
    assert sorted(opened) == sorted(set(opened)), f"a bundle file was read twice: {opened}"
    assert _FIRMWARE in opened


def test_new_target_directories_are_fsynced(
    repo_env: RepoEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each directory a publish creates has its parent fsynced, up to targets/."""
    env = repo_env
    bundle = env.bundle("1.0.0", 1)
    synced: list[Path] = []
    real_fsync_dir = signer.repository.fsync_dir

    def record(path: Path) -> None:
        synced.append(Path(path))
        real_fsync_dir(path)

    monkeypatch.setattr("pumpguard.fsutil.fsync_dir", record)
    publish_bundle(bundle, env.repo, env.online)

    targets = env.path / "targets"
    for created in (targets / "sigma-spectrum", targets / "sigma-spectrum" / "1.0.0"):
        assert created.is_dir()
        assert created.parent in synced, f"{created.parent} was not fsynced after a mkdir"
    assert os.listdir(targets / "sigma-spectrum" / "1.0.0")
