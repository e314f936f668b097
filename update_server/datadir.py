"""Creating a server data folder, loading its online keys, indexing releases."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from tuf.api.metadata import Metadata, TargetFile, Targets

from pumpguard.errors import ConfigError
from pumpguard.fsutil import atomic_write_bytes
from pumpguard.release import ReleaseInfo
from signer import (
    OnlineSigners,
    PassphraseSource,
    Repository,
    SignerError,
    load_signer,
    product_releases,
)
from signer.repository import RepoState
from signer.verification import signature_report
from update_server import audit
from update_server.auth import create_token
from update_server.config import CONFIG_NAME, ServerConfig, load_config
from update_server.db import engine_for, migrate
from update_server.models import Release

__all__ = [
    "UnindexedRelease",
    "init_data_dir",
    "load_online_signers",
    "sync_release_index",
    "unindexed_releases",
]


def load_online_signers(config: ServerConfig) -> OnlineSigners:
    """The snapshot and timestamp signers the configuration names.

    Passphrases come only from the environment: a server never prompts.

    Raises:
        KeyLoadError: A key cannot be loaded.
        ConfigError: The keys are not root's snapshot and timestamp keys.
    """
    source = PassphraseSource(config.passphrase_env, interactive=False)
    online = OnlineSigners(
        load_signer(config.key_spec(config.snapshot_key), source),
        load_signer(config.key_spec(config.timestamp_key), source),
    )
    root = Repository(config.repo_dir).load_root().signed
    for role, s in (("snapshot", online.snapshot), ("timestamp", online.timestamp)):
        if s.public_key.keyid not in root.roles[role].keyids:
            raise ConfigError(
                f"the configured {role} key is not a {role} key of root v{root.version}"
            )
    return online


@dataclass(frozen=True)
class UnindexedRelease:
    """A release the repository lists and the database index lacks.

    Attributes:
        release: The release, from its firmware target.
        firmware: The firmware target.
        metadata_version: The version of the product metadata listing it.
        signers: Keyids of the delegated keys whose signatures on that
            metadata count (what a publish indexes), sorted.
        threshold: Signatures the product's delegation requires.
    """

    release: ReleaseInfo
    firmware: TargetFile
    metadata_version: int
    signers: tuple[str, ...]
    threshold: int


def _counted(state: RepoState, product: str, md: Metadata[Targets]) -> tuple[tuple[str, ...], int]:
    try:
        report = signature_report(state.targets.signed, product, md)
    except (SignerError, ValueError, KeyError):
        # No delegation to judge by: name every signature the metadata carries.
        return tuple(sorted(md.signatures)), 0
    return report.signed, report.threshold


def unindexed_releases(session: Session, repo: Repository) -> list[UnindexedRelease]:
    """Every release the repository lists that the database index lacks, by product."""
    state = repo.state()
    known = {(p, v) for p, v in session.execute(select(Release.product, Release.version))}
    missing = []
    for product in sorted(state.product_versions):
        md = state.product(product)
        if md is None:
            continue
        releases = [r for r in product_releases(md) if (r.product, r.version) not in known]
        if not releases:
            continue
        signers, threshold = _counted(state, product, md)
        for release in releases:
            fw = md.signed.targets[release.firmware_path]
            missing.append(UnindexedRelease(release, fw, md.signed.version, signers, threshold))
    return missing


def sync_release_index(session: Session, repo: Repository, published_by: str = "") -> int:
    """Add every release the repository lists to the database index.

    Returns:
        The number of releases added.
    """
    missing = unindexed_releases(session, repo)
    for m in missing:
        session.add(Release.index(m.release, m.firmware, m.signers, published_by))
    return len(missing)


def init_data_dir(
    data_dir: Path,
    *,
    repo: Path,
    snapshot_key: str,
    timestamp_key: str,
    database_url: str | None = None,
    passphrase_env: str = "PUMPGUARD_PASSPHRASE",  # noqa: S107 - an env var name
    admin_name: str = "admin",
) -> tuple[ServerConfig, str]:
    """Create a server data folder from a repository made by ``pumpguard repo``.

    Copies the repository and the online key files (mode 0600) into the data
    folder, writes ``server.toml``, migrates the database, indexes the
    published releases and creates the first admin token.

    Returns:
        The configuration and the admin token's secret (shown once).

    Raises:
        ConfigError: ``data_dir`` already holds a server, or the keys do not
            belong to the repository.
    """
    if (data_dir / CONFIG_NAME).exists():
        raise ConfigError(f"{data_dir} already holds a server ({CONFIG_NAME})")
    Repository(repo).state()  # a clear error if it is not a repository
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(repo, data_dir / "repo", ignore=shutil.ignore_patterns(".lock"))
    keys_dir = data_dir / "keys"
    keys_dir.mkdir(mode=0o700, exist_ok=True)
    settings: dict[str, str] = {"passphrase_env": passphrase_env}
    for role, spec in (("snapshot", snapshot_key), ("timestamp", timestamp_key)):
        if spec.startswith(("pkcs11:", "hsm:")):
            settings[f"{role}_key"] = spec
        else:
            dest = keys_dir / f"{role}.key"
            atomic_write_bytes(dest, Path(spec).read_bytes(), mode=0o600)
            settings[f"{role}_key"] = f"keys/{role}.key"
    if database_url:
        settings["database_url"] = database_url
    toml = "".join(f'{k} = "{_toml_escape(v)}"\n' for k, v in settings.items())
    atomic_write_bytes(data_dir / CONFIG_NAME, toml.encode(), mode=0o600)
    config = load_config(data_dir, environ={})
    if database_url is None:
        config = load_config(data_dir)
    load_online_signers(config)
    migrate(config.database_url)
    engine = engine_for(config.database_url)
    try:
        with sessionmaker(engine).begin() as session:
            sync_release_index(session, Repository(config.repo_dir), published_by="server init")
            audit.append(session, "cli", "server.init", repo=str(repo))
            _, secret = create_token(session, admin_name, "admin")
    finally:
        engine.dispose()
    return config, secret


def _toml_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
