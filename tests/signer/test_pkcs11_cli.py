"""Every signing command accepts a PKCS#11 URI: an HSM-held release key end to end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from repo_support import CliResult, RepoEnv, publish_args
from softhsm import SoftHsmToken, softhsm_token


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SoftHsmToken]:
    with softhsm_token(tmp_path, monkeypatch) as t:
        yield t


def test_release_engineer_signs_with_hsm_key_through_the_cli(
    repo_env: RepoEnv, token: SoftHsmToken, run_cli: Callable[..., CliResult]
) -> None:
    env = repo_env
    uri = token.uri(key_id=7, object_label="re-hsm")
    r = run_cli("keys", "generate", "--pkcs11", uri, "--out", env.keys / "re-hsm")
    assert r.code == 0, r.err
    assert not (env.keys / "re-hsm.key").exists()

    # The product is delegated to the HSM key and QA's file key.
    r = run_cli(
        "repo",
        "add-product",
        "--repo",
        env.path,
        "--product",
        "hsm-pump",
        "--key",
        env.keys / "re-hsm.pub",
        "--key",
        env.pub("qa1"),
        "--threshold",
        "2",
        "--sign",
        env.key("targets"),
        "--snapshot-key",
        env.key("snapshot"),
        "--timestamp-key",
        env.key("timestamp"),
    )
    assert r.code == 0, r.err
    bundle = env.work / "hsm-bundle"
    r = run_cli(
        "release",
        "create",
        "--repo",
        env.path,
        "--product",
        "hsm-pump",
        "--version",
        "1.0.0",
        "--release-counter",
        "1",
        "--hardware-id",
        "rev-b",
        "--firmware",
        env.firmware("1.0.0"),
        "--out",
        bundle,
    )
    assert r.code == 0, r.err
    assert run_cli("release", "sign", bundle, "--key", uri).code == 0
    assert run_cli("release", "sign", bundle, "--key", env.key("qa1")).code == 0
    r = run_cli(*publish_args(env, bundle))
    assert r.code == 0, r.err
    assert "signed by 2 of 2" in r.out


def test_hsm_key_as_online_timestamp_key_is_checked_against_root(
    repo_env: RepoEnv, token: SoftHsmToken, run_cli: Callable[..., CliResult]
) -> None:
    uri = token.uri(key_id=9, object_label="ts")
    assert run_cli("keys", "generate", "--pkcs11", uri, "--out", repo_env.keys / "ts-hsm").code == 0
    r = run_cli(
        "repo",
        "refresh",
        "--repo",
        repo_env.path,
        "--force",
        "--snapshot-key",
        repo_env.key("snapshot"),
        "--timestamp-key",
        uri,
    )
    assert r.code == 2
    assert "is not a timestamp key of root v1" in r.err
