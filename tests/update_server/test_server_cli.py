"""`pumpguard server`: init, tokens (never printed), audit verify."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import sessionmaker

from repo_support import CliResult, RepoEnv
from server_support import ServerEnv
from update_server.db import engine_for
from update_server.models import AuditEntry


def test_init_writes_admin_token_to_a_private_file_and_never_prints_it(
    repo_env: RepoEnv, database_url: str, tmp_path: Path, run_cli: Callable[..., CliResult]
) -> None:
    data = tmp_path / "srv"
    r = run_cli(
        "server", "init", "--data", data, "--repo", repo_env.path,
        "--snapshot-key", repo_env.key("snapshot"), "--timestamp-key", repo_env.key("timestamp"),
        "--database-url", database_url, "--json",
    )  # fmt: skip
    assert r.code == 0, r.err
    token_file = Path(json.loads(r.out)["admin_token_file"])
    secret = token_file.read_text().strip()
    assert secret.startswith("pgt_")
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert secret not in r.out + r.err
    # A second init into the same folder is refused.
    r = run_cli(
        "server", "init", "--data", data, "--repo", repo_env.path,
        "--snapshot-key", repo_env.key("snapshot"), "--timestamp-key", repo_env.key("timestamp"),
    )  # fmt: skip
    assert r.code == 2
    assert "refusing to overwrite" in r.err or "already holds a server" in r.err


def test_init_refuses_online_keys_that_root_does_not_name(
    repo_env: RepoEnv, tmp_path: Path, run_cli: Callable[..., CliResult]
) -> None:
    r = run_cli(
        "server", "init", "--data", tmp_path / "srv", "--repo", repo_env.path,
        "--snapshot-key", repo_env.key("re1"), "--timestamp-key", repo_env.key("timestamp"),
        "--database-url", f"sqlite:///{tmp_path / 'x.db'}",
    )  # fmt: skip
    assert r.code == 2
    assert "is not a snapshot key of root v1" in r.err


def test_token_lifecycle_through_the_cli(
    server_env: ServerEnv, run_cli: Callable[..., CliResult]
) -> None:
    data = server_env.data_dir
    out = data / "re.token"
    r = run_cli(
        "server", "token", "create", "--data", data, "--name", "carol",
        "--role", "release-engineer", "--product", "sigma-spectrum", "--out", out, "--json",
    )  # fmt: skip
    assert r.code == 0, r.err
    token_id = json.loads(r.out)["id"]
    assert out.read_text().strip() not in r.out
    listed = json.loads(run_cli("server", "token", "list", "--data", data, "--json").out)
    assert [t["role"] for t in listed] == ["admin", "release-engineer"]
    assert all("hash" not in json.dumps(t) for t in listed)
    assert run_cli("server", "token", "revoke", "--data", data, str(token_id)).code == 0
    r = run_cli("server", "token", "revoke", "--data", data, str(token_id))
    assert r.code == 2
    assert "already revoked" in r.err
    r = run_cli(
        "server", "token", "create", "--data", data, "--name", "x", "--role", "release-engineer",
        "--out", data / "x.token",
    )  # fmt: skip
    assert r.code == 2
    assert "needs at least one product" in r.err


def test_audit_verify_fails_on_a_changed_entry(
    server_env: ServerEnv, run_cli: Callable[..., CliResult]
) -> None:
    data = server_env.data_dir
    r = run_cli("server", "audit", "verify", "--data", data, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["entries"] == 2
    engine = engine_for(server_env.database_url)
    with sessionmaker(engine).begin() as s:
        s.execute(update(AuditEntry).where(AuditEntry.seq == 1).values(action="nothing.happened"))
    engine.dispose()
    r = run_cli("server", "audit", "verify", "--data", data)
    assert r.code == 4
    assert r.err.strip() == "error: audit entry 1 (nothing.happened) was changed"


def test_audit_verify_prints_an_anchor_that_a_later_verify_checks(
    server_env: ServerEnv, run_cli: Callable[..., CliResult]
) -> None:
    data = server_env.data_dir
    r = run_cli("server", "audit", "verify", "--data", data, "--json")
    assert r.code == 0, r.err
    anchor = json.loads(r.out)["anchor"]
    assert anchor == f"2:{json.loads(r.out)['head']}"
    assert anchor in run_cli("server", "audit", "verify", "--data", data).out

    r = run_cli("server", "audit", "verify", "--data", data, "--expected-entry", anchor)
    assert r.code == 0, r.err
    wrong = anchor[:-1] + ("0" if anchor[-1] != "0" else "1")
    r = run_cli("server", "audit", "verify", "--data", data, "--expected-entry", wrong)
    assert r.code == 4
    assert "not the one recorded off-site" in r.err
    r = run_cli("server", "audit", "verify", "--data", data, "--expected-entry", "2:nothex")
    assert r.code == 2
    assert "SEQ:HASH" in r.err
