"""What an attacker holding the server (and its online keys) can publish.

Shared by the TUF-client tests and the agent's end-to-end attack matrix. The
attacker has the snapshot and timestamp keys (they live on the server) and may
have stolen one release engineer's key, but never a threshold of them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tuf.api.metadata import Metadata, MetaFile, Snapshot, Targets, Timestamp

from repo_support import PRODUCT, RepoEnv

__all__ = ["current", "forge_online", "md_path", "product_md", "resign"]


def md_path(env: RepoEnv, name: str) -> Path:
    return env.path / "metadata" / name


def current(env: RepoEnv) -> tuple[Metadata[Timestamp], Metadata[Snapshot]]:
    ts = Metadata[Timestamp].from_bytes(md_path(env, "timestamp.json").read_bytes())
    snap_name = f"{ts.signed.snapshot_meta.version}.snapshot.json"
    return ts, Metadata[Snapshot].from_bytes(md_path(env, snap_name).read_bytes())


def product_md(env: RepoEnv, product: str = PRODUCT) -> Metadata[Targets]:
    _, snap = current(env)
    version = snap.signed.meta[f"{product}.json"].version
    return Metadata[Targets].from_bytes(md_path(env, f"{version}.{product}.json").read_bytes())


def forge_online(
    env: RepoEnv,
    *,
    product: Metadata[Targets] | None = None,
    snapshot_meta: Callable[[dict[str, MetaFile]], None] | None = None,
    snapshot_version: int | None = None,
    timestamp: Callable[[Timestamp], None] | None = None,
    name: str = PRODUCT,
) -> None:
    """Publish like a compromised server holding the online keys would."""
    ts, snap = current(env)
    if product is not None:
        md_path(env, f"{product.signed.version}.{name}.json").write_bytes(product.to_bytes())
        snap.signed.meta[f"{name}.json"] = MetaFile(product.signed.version)
    if snapshot_meta is not None:
        snapshot_meta(snap.signed.meta)
    snap_bytes: bytes
    if snapshot_version is None:
        snap.signed.version += 1
        snap.signatures.clear()
        snap.sign(env.signer("snapshot"))
        snap_bytes = snap.to_bytes()
        md_path(env, f"{snap.signed.version}.snapshot.json").write_bytes(snap_bytes)
        snapshot_version = snap.signed.version
    else:
        snap_bytes = md_path(env, f"{snapshot_version}.snapshot.json").read_bytes()
    ts.signed.version += 1
    ts.signed.snapshot_meta = MetaFile.from_data(snapshot_version, snap_bytes, ["sha256"])
    if timestamp is not None:
        timestamp(ts.signed)
    ts.signatures.clear()
    ts.sign(env.signer("timestamp"))
    md_path(env, "timestamp.json").write_bytes(ts.to_bytes())


def resign(md: Metadata[Targets], env: RepoEnv, signers: tuple[str, ...]) -> Metadata[Targets]:
    md.signatures.clear()
    for name in signers:
        md.sign(env.signer(name), append=True)
    return md
