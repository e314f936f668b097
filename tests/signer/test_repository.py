"""Repository tooling: init, products, rotation, refresh, status, release window."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata

from repo_support import PRODUCT, CliResult, RepoEnv
from signer._signing import utcnow
from signer.bundle import publish_bundle
from signer.errors import RepositoryError, SignerError
from signer.keys import load_public_key
from signer.repository import RepoConfig, Repository
from signer.status import repo_status

Tree = Callable[[Path], dict[str, bytes]]


def test_init_writes_root_targets_and_online_roles_with_default_expiry(repo_env: RepoEnv) -> None:
    state = repo_env.repo.state()
    root = state.root.signed
    assert root.consistent_snapshot is True
    assert root.roles["root"].threshold == 2
    now = utcnow()
    assert timedelta(days=364) < root.expires - now <= timedelta(days=365)
    assert timedelta(days=179) < state.targets.signed.expires - now <= timedelta(days=180)
    assert state.snapshot is not None and state.timestamp is not None
    assert timedelta(days=6) < state.snapshot.signed.expires - now <= timedelta(days=7)
    assert timedelta(hours=23) < state.timestamp.signed.expires - now <= timedelta(days=1)


def test_product_delegation_is_terminating_and_path_restricted(repo_env: RepoEnv) -> None:
    delegations = repo_env.repo.state().targets.signed.delegations
    assert delegations is not None and delegations.roles is not None
    role = delegations.roles[PRODUCT]
    assert role.terminating is True
    assert role.threshold == 2
    assert role.is_delegated_path(f"{PRODUCT}/1.0.0/firmware.img")
    assert not role.is_delegated_path("other/1.0.0/firmware.img")


def test_init_refuses_signers_below_root_threshold(repo_env: RepoEnv, tmp_path: Path) -> None:
    pub = lambda n: load_public_key(repo_env.pub(n))  # noqa: E731
    with pytest.raises(SignerError, match="cannot sign root: 1 of the 2"):
        Repository.init(
            tmp_path / "r2",
            root_keys=[pub("root1"), pub("root2")],
            root_threshold=2,
            targets_keys=[pub("targets")],
            snapshot_keys=[pub("snapshot")],
            timestamp_keys=[pub("timestamp")],
            signers=[repo_env.signer("root1"), repo_env.signer("targets")],
        )
    assert not (tmp_path / "r2" / "metadata").exists()


def test_init_refuses_existing_repository(repo_env: RepoEnv) -> None:
    pub = load_public_key(repo_env.pub("root1"))
    with pytest.raises(RepositoryError, match="already holds a repository"):
        Repository.init(
            repo_env.path,
            root_keys=[pub],
            root_threshold=1,
            targets_keys=[pub],
            snapshot_keys=[pub],
            timestamp_keys=[pub],
            signers=[],
        )


def test_add_product_twice_is_refused(repo_env: RepoEnv, tree: Tree) -> None:
    before = tree(repo_env.path)
    with pytest.raises(RepositoryError, match="already exists"):
        repo_env.repo.add_product(
            PRODUCT,
            [load_public_key(repo_env.pub("re1"))],
            1,
            [repo_env.signer("targets")],
            repo_env.online,
        )
    assert tree(repo_env.path) == before


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"expiry_days": {"snapshot": 0}}, "positive"),
        ({"expiry_days": {"bogus": 1}}, "unknown role"),
        ({"refresh_days": {"timestamp": 2}}, "must be shorter"),
        ({"release_window": 1}, "release_window"),
    ],
)
def test_rejects_inconsistent_policy(config: dict[str, object], message: str) -> None:
    with pytest.raises(RepositoryError, match=message):
        RepoConfig(**config)  # type: ignore[arg-type]


def test_rotate_root_needs_old_and_new_thresholds(repo_env: RepoEnv, tree: Tree) -> None:
    env = repo_env
    root3 = load_public_key(env.pub("root3"))
    root2 = load_public_key(env.pub("root2")).keyid
    before = tree(env.path)
    # The new keys alone (root1 + root3) meet the new threshold, not the old one.
    with pytest.raises(SignerError, match="2 signature\\(s\\) of the old root keys \\(has 1\\)"):
        env.repo.rotate_root(
            add_keys=[root3],
            remove_keyids=[root2],
            signers=[env.signer("root1"), env.signer("root3")],
        )
    # The old keys alone (root1 + root2) do not meet the new threshold.
    with pytest.raises(SignerError, match="of the new \\(has 1\\)"):
        env.repo.rotate_root(
            add_keys=[root3],
            remove_keyids=[root2],
            signers=[env.signer("root1"), env.signer("root2")],
        )
    assert tree(env.path) == before
    new = env.repo.rotate_root(
        add_keys=[root3],
        remove_keyids=[root2],
        signers=[env.signer("root1"), env.signer("root2"), env.signer("root3")],
    )
    assert new.signed.version == 2
    assert set(new.signed.roles["root"].keyids) == {
        load_public_key(env.pub("root1")).keyid,
        root3.keyid,
    }
    assert not repo_status(env.repo).errors


def test_rotate_root_refuses_threshold_above_key_count(repo_env: RepoEnv) -> None:
    with pytest.raises(RepositoryError, match="1 key\\(s\\) for a threshold of 2"):
        repo_env.repo.rotate_root(
            remove_keyids=[load_public_key(repo_env.pub("root2")).keyid],
            signers=[repo_env.signer("root1"), repo_env.signer("root2")],
        )


def test_rotate_product_without_new_key_signatures_changes_nothing(
    repo_env: RepoEnv, tree: Tree
) -> None:
    env = repo_env
    publish_bundle(env.bundle("1.0.0", 1), env.repo, env.online)
    before = tree(env.path)
    with pytest.raises(SignerError, match="cannot sign sigma-spectrum: 1 of the 2"):
        env.repo.rotate_product(
            PRODUCT,
            [load_public_key(env.pub("re2")), load_public_key(env.pub("qa1"))],
            2,
            [env.signer("targets"), env.signer("qa1")],
            env.online,
        )
    assert tree(env.path) == before


def test_refresh_resigns_online_roles_only_when_due(repo_env: RepoEnv) -> None:
    env = repo_env
    ts_before = env.repo.state().timestamp
    assert ts_before is not None
    assert env.repo.refresh(env.online) is False
    # After a server outage longer than the timestamp's lifetime.
    later = utcnow() + timedelta(days=3)
    assert env.repo.refresh(env.online, now=later) is True
    state = env.repo.state()
    assert state.timestamp is not None and state.snapshot is not None
    assert state.timestamp.signed.version == ts_before.signed.version + 1
    assert state.timestamp.signed.expires > later


def test_status_warns_within_refresh_window_and_flags_expiry(repo_env: RepoEnv) -> None:
    status = repo_status(repo_env.repo, now=utcnow() + timedelta(hours=13))
    assert any(w.startswith("timestamp expires in") for w in status.warnings)
    assert not status.errors
    status = repo_status(repo_env.repo, now=utcnow() + timedelta(days=2))
    assert "timestamp expired" in " ".join(status.errors)


def test_status_cli_json_lists_every_role(
    repo_env: RepoEnv, run_cli: Callable[..., CliResult]
) -> None:
    publish_bundle(repo_env.bundle("1.0.0", 1), repo_env.repo, repo_env.online)
    r = run_cli("repo", "status", "--repo", repo_env.path, "--json")
    assert r.code == 0, r.err
    roles = {row["role"]: row for row in json.loads(r.out)["roles"]}
    assert set(roles) == {"root", "targets", PRODUCT, "snapshot", "timestamp"}
    assert roles[PRODUCT]["threshold"] == 2
    assert roles[PRODUCT]["latest"] == "1.0.0"
    assert roles["root"]["valid_signatures"] == 2


def test_status_reports_a_tampered_signature(
    repo_env: RepoEnv, run_cli: Callable[..., CliResult]
) -> None:
    path = repo_env.path / "metadata" / "1.root.json"
    md = Metadata.from_bytes(path.read_bytes())
    md.signed.expires += timedelta(days=1)
    path.write_bytes(md.to_bytes())
    r = run_cli("repo", "status", "--repo", repo_env.path)
    assert r.code == 4
    assert "ERROR: root v1 is not signed" in r.out


def test_release_window_drops_oldest_releases_from_metadata(
    repo_env: RepoEnv, tmp_path: Path
) -> None:
    env = repo_env
    cfg = json.loads((env.path / "pumpguard-repo.json").read_text())
    cfg["release_window"] = 2
    (env.path / "pumpguard-repo.json").write_text(json.dumps(cfg))
    for i in range(1, 4):
        verified = publish_bundle(env.bundle(f"1.{i}.0", i), env.repo, env.online)
    assert verified.removed_targets == (
        f"{PRODUCT}/1.1.0/firmware.img",
        f"{PRODUCT}/1.1.0/sbom.cdx.json",
    )
    assert [r.version for r in env.repo.releases(PRODUCT)] == ["1.2.0", "1.3.0"]
    # The dropped release's files stay (immutable), and rollback is still refused.
    assert list((env.path / "targets" / PRODUCT / "1.1.0").iterdir())
    with pytest.raises(SignerError, match="must be greater"):
        env.bundle("1.1.5", 1)


def test_publish_from_tar_bundle(repo_env: RepoEnv) -> None:
    bundle = repo_env.bundle("1.0.0", 1, tar=True)
    assert bundle.is_file()
    verified = publish_bundle(bundle, repo_env.repo, repo_env.online)
    assert verified.release.version == "1.0.0"


def test_published_files_are_immutable_and_timestamp_is_the_only_replaced_file(
    repo_env: RepoEnv,
) -> None:
    env = repo_env
    publish_bundle(env.bundle("1.0.0", 1), env.repo, env.online)
    first = {p.name: p.read_bytes() for p in (env.path / "metadata").iterdir()}
    publish_bundle(env.bundle("1.1.0", 2), env.repo, env.online)
    second = {p.name: p.read_bytes() for p in (env.path / "metadata").iterdir()}
    changed = {name for name in first if first[name] != second[name]}
    assert changed == {"timestamp.json"}
