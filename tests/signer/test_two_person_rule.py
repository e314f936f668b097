"""The two-person release rule, end to end through the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from repo_support import CliResult, RepoEnv, publish_args


def _publish(run_cli: Callable[..., CliResult], env: RepoEnv, bundle: Path) -> CliResult:
    return run_cli(*publish_args(env, bundle))


def test_one_signature_is_refused_two_publish_and_an_outsider_never_counts(
    repo_env: RepoEnv, run_cli: Callable[..., CliResult], tree: Callable[[Path], dict[str, bytes]]
) -> None:
    env = repo_env
    fw = env.firmware("1.0.0")
    bundle = env.work / "b.tar"
    r = run_cli(
        "release",
        "create",
        "--repo",
        env.path,
        "--product",
        "sigma-spectrum",
        "--version",
        "1.0.0",
        "--release-counter",
        "1",
        "--hardware-id",
        "rev-b",
        "--firmware",
        fw,
        "--notes",
        "first release",
        "--out",
        bundle,
        "--tar",
    )
    assert r.code == 0, r.err
    before = tree(env.path)

    # One release engineer signs: refused, nothing written.
    assert run_cli("release", "sign", bundle, "--key", env.key("re1")).code == 0
    r = _publish(run_cli, env, bundle)
    assert r.code == 4
    assert r.err.strip() == "error: sigma-spectrum release is signed by 1 of the 2 required keys"
    assert tree(env.path) == before

    # A key the delegation does not name adds a signature that is not counted.
    assert run_cli("release", "sign", bundle, "--key", env.key("outsider")).code == 0
    r = _publish(run_cli, env, bundle)
    assert r.code == 4
    assert "1 of the 2 required keys; 1 signature(s) by keys the delegation does not name" in r.err
    assert tree(env.path) == before
    report = json.loads(run_cli("release", "verify", bundle, "--repo", env.path, "--json").out)
    assert report["threshold_met"] is False
    assert report["intact"] is True
    assert len(report["unknown_signers"]) == 1

    # QA signs on "another machine": two of two, published.
    assert run_cli("release", "sign", bundle, "--key", env.key("qa1")).code == 0
    r = run_cli("release", "verify", bundle, "--repo", env.path)
    assert r.code == 0, r.out
    assert "signed by 2 of 2 required" in r.out
    r = _publish(run_cli, env, bundle)
    assert r.code == 0, r.err
    assert "published sigma-spectrum 1.0.0" in r.out

    published = env.repo.state().product("sigma-spectrum")
    assert published is not None
    outsider = json.loads(env.pub("outsider").read_text())["keyid"]
    assert outsider not in published.signatures
    assert len(published.signatures) == 2


def test_signing_refuses_an_altered_bundle(
    repo_env: RepoEnv, run_cli: Callable[..., CliResult]
) -> None:
    bundle = repo_env.bundle("1.0.0", 1, signers=("re1",))
    fw = bundle / "targets/sigma-spectrum/1.0.0/firmware.img"
    fw.write_bytes(fw.read_bytes() + b"implant")
    r = run_cli("release", "sign", bundle, "--key", repo_env.key("qa1"))
    assert r.code == 4
    assert "refusing to sign an altered bundle" in r.err
    r = run_cli("release", "verify", bundle, "--repo", repo_env.path, "--json")
    assert r.code == 4
    assert json.loads(r.out)["intact"] is False
