"""Publishing copies exactly the bytes it verified, into durable directories."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import signer.repository
from repo_support import RepoEnv
from signer.bundle import publish_bundle
from signer.errors import HashMismatchError

_FIRMWARE = "targets/sigma-spectrum/1.0.0/firmware.img"


@pytest.mark.parametrize("same_length", [True, False], ids=["same-length", "other-length"])
def test_file_swapped_after_verification_is_not_published(
    repo_env: RepoEnv,
    monkeypatch: pytest.MonkeyPatch,
    tree: Callable[[Path], dict[str, bytes]],
    same_length: bool,
) -> None:
    """A bundle file changed between verification and the copy (threat SGN-BUNDLE-SWAP)."""
    env = repo_env
    bundle = env.bundle("1.0.0", 1)  # a directory bundle, signed by re1 and qa1
    firmware = bundle / _FIRMWARE
    size = firmware.stat().st_size
    verify = signer.repository.verify_release_update

    def racing(**kwargs: Any) -> Any:
        verified = verify(**kwargs)
        firmware.write_bytes(b"EVIL" * (size // 4 if same_length else size))
        return verified

    monkeypatch.setattr(signer.repository, "verify_release_update", racing)
    metadata_before = {k: v for k, v in tree(env.path).items() if k.startswith("metadata/")}

    with pytest.raises(HashMismatchError, match="changed while it was being published"):
        publish_bundle(bundle, env.repo, env.online)

    metadata_after = {k: v for k, v in tree(env.path).items() if k.startswith("metadata/")}
    assert metadata_after == metadata_before
    published = list((env.path / "targets").rglob("*.firmware.img"))
    assert published == []  # nothing under the verified name
    assert not [p for p in (env.path / "targets").rglob(".*") if p.is_file()]  # no temporaries


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
