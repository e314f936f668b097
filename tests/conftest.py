"""Fixtures shared by the whole suite: keys and a populated repository."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from repo_support import PASSPHRASE, CliResult, RepoEnv, make_repo_env
from server_support import (
    ServerEnv,
    fresh_postgres_database,
    migrated_postgres_template,
    require_postgres,
)
from signer.keys import generate_keypair
from update_server.datadir import init_data_dir

KEY_NAMES = (
    "root1",
    "root2",
    "root3",
    "targets",
    "snapshot",
    "timestamp",
    "re1",
    "qa1",
    "re2",
    "outsider",
)


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One set of encrypted test keys for the session (generation is not free)."""
    d = tmp_path_factory.mktemp("keys")
    for name in KEY_NAMES:
        generate_keypair(d / name, passphrase=PASSPHRASE.encode())
    return d


@pytest.fixture(autouse=True)
def _passphrase_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUMPGUARD_PASSPHRASE", PASSPHRASE)


def _tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@pytest.fixture
def tree() -> Callable[[Path], dict[str, bytes]]:
    """Every file below a path with its bytes, to prove nothing changed."""
    return _tree


@pytest.fixture(scope="session")
def repo_template(key_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One repository made by :func:`make_repo_env` for the session; tests get copies."""
    root = tmp_path_factory.mktemp("repo-template")
    work = root / "work"
    work.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PUMPGUARD_PASSPHRASE", PASSPHRASE)
        make_repo_env(root / "repo", key_dir, work)
    return root / "repo"


@pytest.fixture
def repo_env(key_dir: Path, repo_template: Path, tmp_path: Path) -> Iterator[RepoEnv]:
    """A private copy of the session's keys and repository (the same bytes as a fresh one)."""
    keys = tmp_path / "keys"
    shutil.copytree(key_dir, keys)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(repo_template, tmp_path / "repo")
    yield RepoEnv(tmp_path / "repo", keys, work)


@pytest.fixture
def ci() -> bool:
    """Whether we run in CI, where a missing system component must fail, not skip."""
    return os.environ.get("CI") == "true"


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``pumpguard`` in-process exactly as the console script does."""
    from pumpguard.cli import main

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


# ------------------------------------------------------------ update server
# Every server test runs on SQLite and on PostgreSQL.


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated to the newest schema once per session."""
    from update_server.db import migrate

    path = tmp_path_factory.mktemp("sqlite-template") / "server.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A PostgreSQL database migrated once per session (per xdist worker), to copy."""
    require_postgres()
    with migrated_postgres_template() as name:
        yield name


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database for one test, on SQLite and on PostgreSQL.

    Empty, except under ``server_env``, whose ``init_data_dir`` would migrate it
    anyway: then it is a copy of a database migrated once per session
    (``CREATE DATABASE ... TEMPLATE`` on PostgreSQL, a file copy on SQLite), and
    ``init_data_dir`` finds it at the newest schema.
    """
    migrated = "server_env" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "server.db"
        if migrated:
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    require_postgres()
    template = request.getfixturevalue("postgres_template") if migrated else None
    with fresh_postgres_database(template) as url:
        yield url


@pytest.fixture
def server_env(repo_env: RepoEnv, database_url: str, tmp_path: Path) -> ServerEnv:
    data = tmp_path / "server"
    _, admin = init_data_dir(
        data,
        repo=repo_env.path,
        snapshot_key=str(repo_env.key("snapshot")),
        timestamp_key=str(repo_env.key("timestamp")),
        database_url=database_url,
    )
    return ServerEnv(repo_env, data, database_url, admin)
