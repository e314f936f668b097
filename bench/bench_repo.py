"""The repository the benchmarks build, the way the tests build theirs.

Encrypted key files, ``Repository.init`` (one root key), ``add_product`` with a
release engineer and a QA key at threshold 2, and releases made with
``create_release``, two ``sign_bundle`` and ``publish_bundle``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BenchRepo", "make_repo"]

_NAMES = ("root", "targets", "snapshot", "timestamp", "re1", "qa1")


@dataclass
class BenchRepo:
    """A repository under ``work`` with its keys and signers."""

    work: Path
    path: Path
    keys: Path
    product: str
    signers: dict[str, Any]
    online: Any

    def publish(
        self,
        version: str,
        counter: int,
        firmware: Path,
        hardware_ids: Sequence[str] = ("rev-b",),
        notes: str = "bench release",
    ) -> None:
        """Create, two-person sign and publish one release of ``firmware``."""
        from signer import Repository, create_release, publish_bundle, sign_bundle

        bundle = self.work / f"bundle-{version}"
        repo = Repository(self.path)
        create_release(
            repo=repo,
            product=self.product,
            version=version,
            release_counter=counter,
            hardware_ids=tuple(hardware_ids),
            firmware=firmware,
            out=bundle,
            notes=notes,
        )
        sign_bundle(bundle, self.signers["re1"])
        sign_bundle(bundle, self.signers["qa1"])
        publish_bundle(bundle, repo, self.online)


def make_repo(work: Path, product: str, passphrase_env: str) -> BenchRepo:
    """Keys (encrypted with ``$passphrase_env``) and a repository with ``product``."""
    from signer import (
        OnlineSigners,
        PassphraseSource,
        Repository,
        generate_keypair,
        load_public_key,
        load_signer,
    )

    keys = work / "keys"
    passphrase = os.environ[passphrase_env].encode()
    for name in _NAMES:
        generate_keypair(keys / name, passphrase=passphrase)
    source = PassphraseSource(passphrase_env, interactive=False)
    signers = {n: load_signer(str(keys / f"{n}.key"), source) for n in _NAMES}
    pub = {n: load_public_key(keys / f"{n}.pub") for n in _NAMES}
    online = OnlineSigners(signers["snapshot"], signers["timestamp"])
    path = work / "repo"
    Repository.init(
        path,
        root_keys=[pub["root"]],
        root_threshold=1,
        targets_keys=[pub["targets"]],
        snapshot_keys=[pub["snapshot"]],
        timestamp_keys=[pub["timestamp"]],
        signers=[signers[n] for n in ("root", "targets", "snapshot", "timestamp")],
    )
    Repository(path).add_product(product, [pub["re1"], pub["qa1"]], 2, [signers["targets"]], online)
    return BenchRepo(work, path, keys, product, signers, online)
