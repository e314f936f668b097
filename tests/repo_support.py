"""Test support: a populated repository and CLI results (imported by tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer

from signer.bundle import create_release, sign_bundle
from signer.keys import PassphraseSource, load_public_key, load_signer
from signer.repository import OnlineSigners, Repository

PASSPHRASE = "test-passphrase-not-secret"
PRODUCT = "sigma-spectrum"


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
            tar=tar,
        )
        for name in signers:
            sign_bundle(out, self.signer(name))
        return out


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


def publish_args(env: RepoEnv, bundle: Path) -> list[str | Path]:
    """The `release publish` command line into ``env``'s local repository."""
    return [
        "release", "publish", bundle, "--repo", env.path,
        "--snapshot-key", env.key("snapshot"), "--timestamp-key", env.key("timestamp"),
    ]  # fmt: skip


def make_repo_env(path: Path, keys: Path, work: Path) -> RepoEnv:
    """A repository with root (2 of 2), targets, online roles and ``sigma-spectrum``."""
    env = RepoEnv(path, keys, work)

    def pub(n: str) -> Any:
        return load_public_key(env.pub(n))

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
    return env
