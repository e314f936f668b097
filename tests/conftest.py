"""Fixtures shared by the whole suite: keys and a populated repository."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from securesystemslib.signer import Signer

from signer.bundle import create_release, sign_bundle
from signer.keys import PassphraseSource, generate_keypair, load_public_key, load_signer
from signer.repository import OnlineSigners, Repository

PASSPHRASE = "test-passphrase-not-secret"
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
PRODUCT = "sigma-spectrum"


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


@dataclass
class RepoEnv:
    """A repository with product ``sigma-spectrum`` (re1 + qa1, threshold 2)."""

    path: Path
    keys: Path
    work: Path
    _signers: dict[str, Signer] = field(default_factory=dict)

    @property
    def repo(self) -> Repository:
        return Repository(self.path)

    def key(self, name: str) -> Path:
        return self.keys / f"{name}.key"

    def pub(self, name: str) -> Path:
        return self.keys / f"{name}.pub"

    def signer(self, name: str) -> Signer:
        if name not in self._signers:
            self._signers[name] = load_signer(str(self.key(name)), PassphraseSource())
        return self._signers[name]

    @property
    def online(self) -> OnlineSigners:
        return OnlineSigners(self.signer("snapshot"), self.signer("timestamp"))

    def firmware(self, version: str, size: int = 4096) -> Path:
        path = self.work / f"fw-{version}.img"
        path.write_bytes((f"PUMPGUARD-FW {version}\n".encode() * (size // 16 + 1))[:size])
        return path

    def bundle(
        self,
        version: str,
        counter: int,
        signers: tuple[str, ...] = ("re1", "qa1"),
        *,
        product: str = PRODUCT,
        tar: bool = False,
        hardware_ids: tuple[str, ...] = ("rev-b",),
    ) -> Path:
        out = self.work / f"bundle-{product}-{version}{'.tar' if tar else ''}"
        create_release(
            repo=self.repo,
            product=product,
            version=version,
            release_counter=counter,
            hardware_ids=hardware_ids,
            firmware=self.firmware(version),
            out=out,
            notes=f"release {version}",
        )
        for name in signers:
            sign_bundle(out, self.signer(name))
        return out


def _tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@pytest.fixture
def tree() -> Callable[[Path], dict[str, bytes]]:
    """Every file below a path with its bytes, to prove nothing changed."""
    return _tree


@pytest.fixture
def repo_env(key_dir: Path, tmp_path: Path) -> Iterator[RepoEnv]:
    keys = tmp_path / "keys"
    shutil.copytree(key_dir, keys)
    work = tmp_path / "work"
    work.mkdir()
    env = RepoEnv(tmp_path / "repo", keys, work)
    pub = lambda n: load_public_key(env.pub(n))  # noqa: E731
    Repository.init(
        env.path,
        root_keys=[pub("root1"), pub("root2")],
        root_threshold=2,
        targets_keys=[pub("targets")],
        snapshot_keys=[pub("snapshot")],
        timestamp_keys=[pub("timestamp")],
        signers=[env.signer(n) for n in ("root1", "root2", "targets", "snapshot", "timestamp")],
    )
    env.repo.add_product(PRODUCT, [pub("re1"), pub("qa1")], 2, [env.signer("targets")], env.online)
    yield env


@pytest.fixture
def ci() -> bool:
    """Whether we run in CI, where a missing system component must fail, not skip."""
    return os.environ.get("CI") == "true"


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


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
