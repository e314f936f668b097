"""A bundle whose product metadata is not TUF metadata is refused, never a crash."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from repo_support import PRODUCT, CliResult, RepoEnv
from signer.bundle import open_bundle, sign_bundle, verify_bundle
from signer.errors import BundleError

CORRUPTIONS = {
    "invalid-json": b'{"signed": {"_type": "targets", ',
    "json-not-tuf-metadata": json.dumps({"hello": "world"}).encode(),
    "json-array": b"[1, 2, 3]",
    "not-utf8": b"\xff\xfe\x00garbage",
}


def _corrupt(bundle: Path, data: bytes) -> Path:
    md_path = bundle / "metadata" / f"{PRODUCT}.json"
    assert md_path.is_file()
    md_path.write_bytes(data)
    return md_path


@pytest.mark.parametrize("data", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupt_metadata_raises_bundle_error_naming_the_file(
    repo_env: RepoEnv, data: bytes
) -> None:
    bundle = repo_env.bundle("1.0.0", 1)
    _corrupt(bundle, data)
    with open_bundle(bundle) as opened, pytest.raises(BundleError) as excinfo:
        opened.metadata()
    assert f"metadata/{PRODUCT}.json" in str(excinfo.value)
    assert excinfo.value.__cause__ is not None
    with pytest.raises(BundleError, match=f"metadata/{PRODUCT}.json"):
        verify_bundle(bundle, repo_env.repo)
    with pytest.raises(BundleError, match=f"metadata/{PRODUCT}.json"):
        sign_bundle(bundle, repo_env.signer("re1"))


@pytest.mark.parametrize("data", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
@pytest.mark.parametrize("command", ["verify", "sign"])
def test_cli_refuses_corrupt_metadata_with_one_line(
    repo_env: RepoEnv, run_cli: Callable[..., CliResult], data: bytes, command: str
) -> None:
    bundle = repo_env.bundle("1.0.0", 1, signers=())
    _corrupt(bundle, data)
    if command == "verify":
        r = run_cli("release", "verify", bundle, "--repo", repo_env.path)
    else:
        r = run_cli("release", "sign", bundle, "--key", repo_env.key("re1"))
    assert r.code == BundleError.exit_code == 4, r.err
    assert "Traceback" not in r.err
    lines = r.err.splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith("error: ")
    assert f"metadata/{PRODUCT}.json" in lines[0]


def test_corrupt_metadata_in_tar_bundle_is_refused(
    repo_env: RepoEnv, run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    src = repo_env.bundle("1.0.0", 1)
    _corrupt(src, b"{nope")
    tar_path = tmp_path / "bundle.tar"
    with tarfile.open(tar_path, "w:") as tar:
        for item in sorted(src.rglob("*")):
            if item.is_file():
                tar.add(item, item.relative_to(src).as_posix())
    r = run_cli("release", "verify", tar_path, "--repo", repo_env.path)
    assert r.code == BundleError.exit_code, r.err
    assert "Traceback" not in r.err
    assert len(r.err.splitlines()) == 1, r.err
