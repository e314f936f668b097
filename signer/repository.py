"""A TUF repository on the local file system.

Layout of ``DIR``::

    pumpguard-repo.json      policy: expiry, refresh windows, release window
    metadata/                published, servable as static files
        1.root.json ...      every root version (clients walk them)
        N.targets.json       top-level targets: delegates one role per product
        N.<product>.json     a product's releases, signed by its release engineers
        N.snapshot.json      versions of targets and every product role
        timestamp.json       the only file ever replaced; replaced last
    targets/<P>/<V>/<sha256>.<name>   release files (consistent snapshots)
    .lock                    serialises writers on this machine

The current repository is whatever ``timestamp.json`` leads to; files of a
newer version that ``timestamp.json`` does not reach yet are invisible to
clients, so a crash during a publish leaves the old repository intact. A write
that fails (a full disk, an I/O error) before ``timestamp.json`` is replaced
also removes every file and folder it created (:mod:`signer._journal`), so the
repository is byte for byte what it was and the error is one
:class:`~signer.errors.RepositoryError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key, Signer
from tuf.api.exceptions import RepositoryError as TufRepositoryError
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    Targets,
    Timestamp,
)

from pumpguard.fsutil import atomic_write_bytes, exclusive_lock, fsync_dir
from pumpguard.release import SBOM_NAME, validate_product
from signer._journal import WriteJournal
from signer._keymaterial import duplicate_keys
from signer._signing import SERIALIZER, expiry, require_signer, sign_role, utcnow
from signer._staging import file_digest, place, stage
from signer.errors import RepositoryError, SignerError
from signer.verification import (
    FileDigest,
    VerifiedRelease,
    delegation_for,
    product_releases,
    verify_release_update,
)

__all__ = [
    "DEFAULT_EXPIRY_DAYS",
    "DEFAULT_REFRESH_DAYS",
    "OnlineSigners",
    "RepoConfig",
    "RepoState",
    "Repository",
    "file_digest",
    "verify_files",
]

logger = logging.getLogger(__name__)

CONFIG_NAME = "pumpguard-repo.json"
TOP_LEVEL = ("root", "targets", "snapshot", "timestamp")
DEFAULT_EXPIRY_DAYS: dict[str, float] = {
    "root": 365,
    "targets": 180,
    "products": 180,
    "snapshot": 7,
    "timestamp": 1,
}
#: A role is re-signed (and `repo status` warns) this long before it expires.
DEFAULT_REFRESH_DAYS: dict[str, float] = {
    "root": 60,
    "targets": 30,
    "products": 30,
    "snapshot": 3,
    "timestamp": 0.5,
}
#: Releases a product's metadata lists; older ones drop out of the signed listing
#: (their files stay), which bounds what a pump downloads (bench/repo_scale.py).
DEFAULT_RELEASE_WINDOW = 32


@dataclass(frozen=True)
class RepoConfig:
    """Repository policy, kept beside (not inside) the published metadata."""

    expiry_days: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_EXPIRY_DAYS))
    refresh_days: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_REFRESH_DAYS))
    release_window: int = DEFAULT_RELEASE_WINDOW

    def __post_init__(self) -> None:
        for name, table in (("expiry", self.expiry_days), ("refresh", self.refresh_days)):
            for role, days in table.items():
                if role not in DEFAULT_EXPIRY_DAYS:
                    raise RepositoryError(f"unknown role {role!r} in {name} policy")
                if not isinstance(days, int | float) or isinstance(days, bool) or days <= 0:
                    raise RepositoryError(f"{name} days of {role} must be a positive number")
        for role in DEFAULT_EXPIRY_DAYS:
            if self.refresh_for(role) >= self.expiry_for(role):
                raise RepositoryError(
                    f"{role}: refresh window ({self.refresh_for(role)} d) must be shorter "
                    f"than its lifetime ({self.expiry_for(role)} d)"
                )
        if not isinstance(self.release_window, int) or self.release_window < 2:
            raise RepositoryError("release_window must be an integer >= 2")

    def expiry_for(self, role: str) -> float:
        """Lifetime in days of ``role`` (product roles share ``products``)."""
        return self.expiry_days.get(_policy_key(role), DEFAULT_EXPIRY_DAYS[_policy_key(role)])

    def refresh_for(self, role: str) -> float:
        """Refresh window in days of ``role``."""
        return self.refresh_days.get(_policy_key(role), DEFAULT_REFRESH_DAYS[_policy_key(role)])

    def to_json(self) -> bytes:
        """Serialise for ``pumpguard-repo.json``."""
        data = {
            "expiry_days": dict(self.expiry_days),
            "refresh_days": dict(self.refresh_days),
            "release_window": self.release_window,
        }
        return json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, source: str = CONFIG_NAME) -> RepoConfig:
        """Parse ``pumpguard-repo.json``."""
        try:
            raw = json.loads(data)
            return cls(
                expiry_days={**DEFAULT_EXPIRY_DAYS, **raw.get("expiry_days", {})},
                refresh_days={**DEFAULT_REFRESH_DAYS, **raw.get("refresh_days", {})},
                release_window=raw.get("release_window", DEFAULT_RELEASE_WINDOW),
            )
        except (ValueError, AttributeError, TypeError) as e:
            raise RepositoryError(f"{source} is not valid: {e}") from e


def _policy_key(role: str) -> str:
    return role if role in TOP_LEVEL else "products"


@dataclass(frozen=True)
class OnlineSigners:
    """The online keys that sign snapshot and timestamp."""

    snapshot: Signer
    timestamp: Signer


@dataclass
class RepoState:
    """The repository as clients currently see it.

    Product metadata is loaded on first use: a publish touches one product, and
    parsing every product's releases would make it grow with the whole
    repository instead of with that product (bench/repo_scale.py).
    """

    root: Metadata[Root]
    targets: Metadata[Targets]
    snapshot: Metadata[Snapshot] | None
    timestamp: Metadata[Timestamp] | None
    #: Current metadata version of every product with a release.
    product_versions: dict[str, int]
    _loader: Callable[[str, int], Metadata[Targets]] | None = field(default=None, repr=False)
    _products: dict[str, Metadata[Targets]] = field(default_factory=dict, repr=False)

    def product(self, name: str) -> Metadata[Targets] | None:
        """A product's current metadata, None before its first release.

        Raises:
            UnknownProductError: targets does not delegate to ``name``.
        """
        delegation_for(self.targets.signed, name)
        if name not in self._products:
            version = self.product_versions.get(name)
            if version is None or self._loader is None:
                return None
            self._products[name] = self._loader(name, version)
        return self._products[name]

    def set_product(self, name: str, md: Metadata[Targets]) -> None:
        """Record a product's new metadata (before snapshot is re-signed)."""
        self._products[name] = md
        self.product_versions[name] = md.signed.version


class Repository:
    """A local TUF repository (see the module docstring for its layout)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.metadata_dir = path / "metadata"
        self.targets_dir = path / "targets"
        self._lock = path / ".lock"

    # ----------------------------------------------------------------- reading
    @property
    def config(self) -> RepoConfig:
        """The repository's policy."""
        path = self.path / CONFIG_NAME
        try:
            return RepoConfig.from_json(path.read_bytes(), str(path))
        except FileNotFoundError as e:
            raise RepositoryError(
                f"{self.path} is not a pumpguard repository (no {CONFIG_NAME})"
            ) from e

    def _load(self, name: str, cls: type[Any]) -> Metadata[Any]:
        path = self.metadata_dir / name
        try:
            md: Metadata[Any] = Metadata.from_bytes(path.read_bytes())
        except FileNotFoundError as e:
            raise RepositoryError(f"repository is missing {path}") from e
        except (OSError, ValueError, TufRepositoryError) as e:
            raise RepositoryError(f"{path} is not valid TUF metadata: {e}") from e
        if not isinstance(md.signed, cls):
            raise RepositoryError(f"{path} is not {cls.type} metadata")
        return md

    def root_versions(self) -> list[int]:
        """Versions of root present: 1..N, found the way clients walk them.

        Probing N+1 (TUF spec 5.3.3) rather than listing the directory keeps
        this independent of how many other metadata files the repository holds.
        """
        versions: list[int] = []
        while (self.metadata_dir / f"{len(versions) + 1}.root.json").is_file():
            versions.append(len(versions) + 1)
        if not versions:
            raise RepositoryError(f"{self.metadata_dir} has no 1.root.json")
        return versions

    def load_root(self, version: int | None = None) -> Metadata[Root]:
        """Root of ``version``, the newest by default."""
        version = version or self.root_versions()[-1]
        return self._load(f"{version}.root.json", Root)

    def state(self) -> RepoState:
        """Load the current repository, following ``timestamp.json``."""
        _ = self.config  # raises a clear error for a non-repository
        root = self.load_root()
        if not (self.metadata_dir / "timestamp.json").exists():
            # Before the online roles first signed: only the offline part exists.
            targets_versions = sorted(
                int(p.name.split(".", 1)[0]) for p in self.metadata_dir.glob("*.targets.json")
            )
            if not targets_versions:
                raise RepositoryError(f"{self.metadata_dir} has no targets metadata")
            targets = self._load(f"{targets_versions[-1]}.targets.json", Targets)
            return RepoState(root, targets, None, None, {})
        timestamp = self._load("timestamp.json", Timestamp)
        snapshot = self._load(f"{timestamp.signed.snapshot_meta.version}.snapshot.json", Snapshot)
        meta = snapshot.signed.meta
        targets = self._load(f"{meta['targets.json'].version}.targets.json", Targets)
        versions = {
            name[: -len(".json")]: info.version
            for name, info in meta.items()
            if name != "targets.json"
        }
        return RepoState(root, targets, snapshot, timestamp, versions, self._load_product)

    def _load_product(self, name: str, version: int) -> Metadata[Targets]:
        return self._load(f"{version}.{name}.json", Targets)

    # ----------------------------------------------------------------- writing
    @contextlib.contextmanager
    def _writing(self, operation: str) -> Iterator[WriteJournal]:
        """Journal a write; if it fails before its commit point, remove what it created.

        An OSError becomes one :class:`RepositoryError` naming ``operation``,
        the system's reason and what became of the repository; other errors
        (a refusal, an interrupt) pass unchanged once the write is undone.
        """
        journal = WriteJournal()
        try:
            yield journal
        except BaseException as e:
            visible = journal.visible()
            left = journal.undo()
            if not isinstance(e, OSError):
                raise
            raise RepositoryError(self._failure(operation, e, visible, left)) from e

    def _failure(self, operation: str, e: OSError, visible: bool | None, left: list[Path]) -> str:
        # No absolute path: the server passes this message to API clients.
        reason = e.strerror or str(e)
        if visible:
            return (
                f"{operation}: published, but {reason} after timestamp.json was replaced"
                " (the new files may not be on disk yet)"
            )
        if visible is None:
            return (
                f"{operation} failed: {reason}; timestamp.json cannot be read, so whether"
                " clients see the new state is unknown (run `pumpguard repo status`)"
            )
        if left:
            names = ", ".join(str(p.relative_to(self.path)) for p in left[:3])
            return (
                f"{operation} failed: {reason}; nothing was published, but {len(left)}"
                f" unreferenced file(s) could not be removed: {names}"
            )
        return f"{operation} failed: {reason}; the repository is as it was"

    def _write_versioned(self, role: str, md: Metadata[Any], journal: WriteJournal) -> None:
        # Versions above what timestamp.json reaches are not yet visible, so a
        # leftover of an interrupted write may be replaced; visible ones never.
        path = self.metadata_dir / f"{md.signed.version}.{role}.json"
        journal.creating(path)
        atomic_write_bytes(path, md.to_bytes(SERIALIZER))
        logger.info("%s: wrote %s v%d", self.path, role, md.signed.version)

    def _publish_online(
        self, state: RepoState, online: OnlineSigners, now: datetime, journal: WriteJournal
    ) -> tuple[Metadata[Snapshot], Metadata[Timestamp]]:
        """Write a new snapshot and, last and atomically, a new timestamp."""
        root = state.root.signed
        require_signer(online.snapshot, root, Snapshot.type)
        require_signer(online.timestamp, root, Timestamp.type)
        cfg = self.config
        meta: dict[str, MetaFile] = {"targets.json": MetaFile(state.targets.signed.version)}
        for name, version in state.product_versions.items():
            meta[f"{name}.json"] = MetaFile(version)
        snap_version = state.snapshot.signed.version + 1 if state.snapshot else 1
        snapshot = Metadata(
            Snapshot(snap_version, expires=expiry(cfg.expiry_for("snapshot"), now), meta=meta)
        )
        sign_role(snapshot, root, Snapshot.type, [online.snapshot])
        snap_bytes = snapshot.to_bytes(SERIALIZER)
        ts_version = state.timestamp.signed.version + 1 if state.timestamp else 1
        timestamp = Metadata(
            Timestamp(
                ts_version,
                expires=expiry(cfg.expiry_for("timestamp"), now),
                snapshot_meta=MetaFile.from_data(snap_version, snap_bytes, ["sha256"]),
            )
        )
        sign_role(timestamp, root, Timestamp.type, [online.timestamp])
        snap_path = self.metadata_dir / f"{snap_version}.snapshot.json"
        journal.creating(snap_path)
        atomic_write_bytes(snap_path, snap_bytes)
        # TUF spec 5.3/5.4 and DESIGN.md: timestamp.json is replaced last and
        # atomically, so a client sees the old or the new repository, never a mix;
        # once it holds the new bytes nothing of this write is removed.
        ts_path, ts_bytes = self.metadata_dir / "timestamp.json", timestamp.to_bytes(SERIALIZER)
        journal.creating(ts_path)
        journal.commit_point(ts_path, ts_bytes)
        atomic_write_bytes(ts_path, ts_bytes)
        logger.info(
            "%s: snapshot v%d and timestamp v%d published", self.path, snap_version, ts_version
        )
        return snapshot, timestamp

    @classmethod
    def init(
        cls,
        path: Path,
        *,
        root_keys: Sequence[Key],
        root_threshold: int,
        targets_keys: Sequence[Key],
        snapshot_keys: Sequence[Key],
        timestamp_keys: Sequence[Key],
        signers: Iterable[Signer],
        config: RepoConfig | None = None,
        targets_threshold: int = 1,
        now: datetime | None = None,
    ) -> Repository:
        """Create a repository with root v1 and targets v1.

        Snapshot and timestamp are signed too when ``signers`` holds their
        keys; otherwise the first publish (or ``refresh``) signs them.

        Raises:
            RepositoryError: ``path`` already holds a repository or the keys
                and thresholds are inconsistent.
            SignerError: The signers do not reach root's or targets' threshold.
        """
        repo = cls(path)
        config = config or RepoConfig()
        now = now or utcnow()
        if (path / CONFIG_NAME).exists() or (
            repo.metadata_dir.exists() and any(repo.metadata_dir.iterdir())
        ):
            raise RepositoryError(f"{path} already holds a repository")
        roles = (
            ("root", root_keys, root_threshold),
            ("targets", targets_keys, targets_threshold),
            ("snapshot", snapshot_keys, 1),
            ("timestamp", timestamp_keys, 1),
        )
        for role, keys, threshold in roles:
            _check_keys(role, keys, threshold)
        signers = list(signers)
        root = Root(expires=expiry(config.expiry_for("root"), now), consistent_snapshot=True)
        for role, keys, threshold in roles:
            for key in keys:
                root.add_key(key, role)
            root.roles[role].threshold = threshold
        root_md = Metadata(root)
        sign_role(root_md, root, Root.type, signers)
        targets_md = Metadata(
            Targets(
                expires=expiry(config.expiry_for("targets"), now),
                delegations=Delegations(keys={}, roles={}),
            )
        )
        sign_role(targets_md, root, Targets.type, signers)

        online = _online_from(signers, root)
        with exclusive_lock(repo._lock), repo._writing(f"creating the repository {path}") as j:
            j.make_dirs(repo.metadata_dir)
            j.make_dirs(repo.targets_dir)
            j.creating(path / CONFIG_NAME)
            atomic_write_bytes(path / CONFIG_NAME, config.to_json())
            repo._write_versioned("root", root_md, j)
            repo._write_versioned("targets", targets_md, j)
            if online is not None:
                state = RepoState(root_md, targets_md, None, None, {})
                repo._publish_online(state, online, now, j)
            fsync_dir(path)
        return repo

    def _update_targets(
        self,
        operation: str,
        state: RepoState,
        change: Any,
        signers: Sequence[Signer],
        online: OnlineSigners,
        now: datetime,
        resigned_products: Mapping[str, Metadata[Targets]] | None = None,
    ) -> None:
        targets = state.targets.signed
        change(targets)
        targets.version += 1
        targets.expires = expiry(self.config.expiry_for("targets"), now)
        sign_role(state.targets, state.root.signed, Targets.type, signers)
        with self._writing(operation) as journal:
            for name, md in (resigned_products or {}).items():
                self._write_versioned(name, md, journal)
                state.set_product(name, md)
            self._write_versioned("targets", state.targets, journal)
            self._publish_online(state, online, now, journal)

    def add_product(
        self,
        product: str,
        keys: Sequence[Key],
        threshold: int,
        signers: Sequence[Signer],
        online: OnlineSigners,
        now: datetime | None = None,
    ) -> None:
        """Delegate ``product/*`` to a new terminating product role.

        Raises:
            RepositoryError: The product exists, or keys/threshold are invalid.
            SignerError: ``signers`` do not hold targets' threshold.
        """
        validate_product(product)
        _check_keys(product, keys, threshold)
        now = now or utcnow()
        with exclusive_lock(self._lock):
            state = self.state()
            delegations = state.targets.signed.delegations
            if delegations and delegations.roles and product in delegations.roles:
                raise RepositoryError(f"product {product!r} already exists")

            def change(targets: Targets) -> None:
                role = DelegatedRole(
                    product, [], threshold, terminating=True, paths=[f"{product}/*/*"]
                )
                if targets.delegations is None or targets.delegations.roles is None:
                    raise RepositoryError("targets delegates by hash bins, not by product")
                targets.delegations.roles[product] = role
                for key in keys:
                    targets.add_key(key, product)

            self._update_targets(f"adding product {product}", state, change, signers, online, now)

    def rotate_product(
        self,
        product: str,
        keys: Sequence[Key],
        threshold: int,
        signers: Sequence[Signer],
        online: OnlineSigners,
        now: datetime | None = None,
    ) -> None:
        """Replace a product's keys and threshold.

        The product's current metadata is re-signed (version + 1) by the new
        keys in the same step, or clients would reject it the moment the new
        delegation is visible.

        Raises:
            UnknownProductError: No such product.
            SignerError: ``signers`` hold neither targets' threshold nor the
                new product threshold.
        """
        _check_keys(product, keys, threshold)
        now = now or utcnow()
        with exclusive_lock(self._lock):
            state = self.state()
            current = state.product(product)

            def change(targets: Targets) -> None:
                role = delegation_for(targets, product)
                for keyid in list(role.keyids):
                    targets.revoke_key(keyid, product)
                role.threshold = threshold
                for key in keys:
                    targets.add_key(key, product)

            resigned: dict[str, Metadata[Targets]] = {}
            if current is not None:
                # Work on copies: nothing is written unless every signature is there.
                new_targets: Metadata[Targets] = Metadata.from_bytes(state.targets.to_bytes())
                change(new_targets.signed)
                md: Metadata[Targets] = Metadata.from_bytes(current.to_bytes())
                md.signed.version += 1
                md.signed.expires = expiry(self.config.expiry_for(product), now)
                sign_role(md, new_targets.signed, product, signers)
                resigned[product] = md
            self._update_targets(
                f"rotating the keys of {product}", state, change, signers, online, now, resigned
            )

    def rotate_root(
        self,
        *,
        add_keys: Sequence[Key] = (),
        remove_keyids: Sequence[str] = (),
        threshold: int | None = None,
        signers: Sequence[Signer],
        now: datetime | None = None,
    ) -> Metadata[Root]:
        """Write root N+1 with root keys added or revoked.

        TUF spec 5.3.4: the new root must be signed by a threshold of the old
        root keys and by a threshold of its own keys.

        Raises:
            RepositoryError: The change would leave root without enough keys.
            SignerError: The signatures do not meet both thresholds.
        """
        now = now or utcnow()
        with exclusive_lock(self._lock):
            old = self.load_root()
            new = Metadata.from_bytes(old.to_bytes())
            root = new.signed
            for keyid in remove_keyids:
                if keyid not in root.roles["root"].keyids:
                    raise RepositoryError(f"{keyid[:12]} is not a root key")
                root.revoke_key(keyid, "root")
            for key in add_keys:
                root.add_key(key, "root")
            if threshold is not None:
                root.roles["root"].threshold = threshold
            role = root.roles["root"]
            _refuse_duplicate_keys("root", (root.keys[k] for k in role.keyids))
            if role.threshold < 1 or len(role.keyids) < role.threshold:
                raise RepositoryError(
                    f"root would have {len(role.keyids)} key(s) for a threshold of {role.threshold}"
                )
            root.version += 1
            root.expires = expiry(self.config.expiry_for("root"), now)
            new.signatures.clear()
            for s in signers:
                keyid = s.public_key.keyid
                if keyid in old.signed.roles["root"].keyids or keyid in role.keyids:
                    new.sign(s, append=True)
            result = root.get_root_verification_result(old.signed, new.signed_bytes, new.signatures)
            if not result.verified:
                raise SignerError(
                    f"root v{root.version} needs {result.first.threshold} signature(s) of the "
                    f"old root keys (has {len(result.first.signed)}) and "
                    f"{result.second.threshold} of the new (has {len(result.second.signed)})"
                )
            with self._writing(f"writing root v{root.version}") as journal:
                # Clients probe for N+1.root.json: once it exists it is visible.
                journal.commit_point(
                    self.metadata_dir / f"{root.version}.root.json", new.to_bytes(SERIALIZER)
                )
                self._write_versioned("root", new, journal)
            return new

    def refresh(
        self, online: OnlineSigners, *, force: bool = False, now: datetime | None = None
    ) -> bool:
        """Re-sign snapshot and timestamp when they enter their refresh window.

        Returns:
            Whether anything was re-signed.
        """
        now = now or utcnow()
        with exclusive_lock(self._lock):
            state = self.state()
            cfg = self.config
            due = force or state.snapshot is None or state.timestamp is None
            for md, role in ((state.snapshot, "snapshot"), (state.timestamp, "timestamp")):
                if (
                    md is not None
                    and md.signed.expires - timedelta(days=cfg.refresh_for(role)) <= now
                ):
                    due = True
            if due:
                with self._writing("re-signing snapshot and timestamp") as journal:
                    self._publish_online(state, online, now, journal)
            return due

    def publish(
        self,
        product: str,
        new: Metadata[Targets],
        files: Mapping[str, Path],
        online: OnlineSigners,
        now: datetime | None = None,
        *,
        claimed_version: str | None = None,
        before_write: Callable[[VerifiedRelease], None] | None = None,
    ) -> VerifiedRelease:
        """Verify and publish a product's next metadata and the release files it adds.

        Under the repository lock, each file is read once: copied beside its
        final place while it is hashed (:mod:`signer._staging`), and the
        copies are verified (:func:`verify_files`), so what is published is
        exactly what was verified. A refused update, and a write that fails
        before ``timestamp.json`` is replaced, leave the repository
        byte-for-byte as it was (every file and folder created is removed).

        Args:
            product: The product role.
            new: The product's next metadata, signed by its release engineers.
            files: Local file of every new target, by target path.
            online: Snapshot and timestamp signers.
            now: Reference time.
            claimed_version: The version ``bundle.json`` names, which must be
                the release the metadata adds (:func:`signer.bundle.check_bundle`).
            before_write: Called with the verified release, still under the
                lock and before anything is visible (the server writes its
                index row and audit entry here); an exception it raises
                refuses the publish and leaves the repository as it was.

        Raises:
            PublishRefusedError: Any of the checks of
                :func:`signer.verification.verify_release_update` fails.
            RepositoryError: Writing failed (no space left, an I/O error); the
                message says whether the repository is as it was.
        """
        now = now or utcnow()
        with exclusive_lock(self._lock):
            state = self.state()
            require_signer(online.snapshot, state.root.signed, Snapshot.type)
            require_signer(online.timestamp, state.root.signed, Timestamp.type)
            operation = f"publishing {product} {claimed_version or 'a release'}"
            with self._writing(operation) as journal:
                staged = stage(self.targets_dir, product, files, journal)
                verified = verify_files(
                    state, product, new, staged.digests, staged.paths, now, claimed_version
                )
                if before_write is not None:
                    before_write(verified)
                # Signatures by keys the delegation does not name were not counted;
                # they are not published either.
                for keyid in verified.signatures.unknown:
                    del new.signatures[keyid]
                place(self.targets_dir, staged, verified.new_targets, journal)
                self._write_versioned(product, new, journal)
                state.set_product(product, new)
                self._publish_online(state, online, now, journal)
            logger.info(
                "%s: published %s %s (counter %d), signed by %s",
                self.path,
                product,
                verified.release.version,
                verified.release.release_counter,
                ", ".join(k[:12] for k in verified.signatures.signed),
            )
            return verified

    def releases(self, product: str) -> list[Any]:
        """The releases a product's current metadata lists, oldest first."""
        return product_releases(self.state().product(product))


def verify_files(
    state: RepoState,
    product: str,
    new: Metadata[Targets],
    digests: Mapping[str, FileDigest],
    files: Mapping[str, Path],
    now: datetime,
    claimed_version: str | None = None,
) -> VerifiedRelease:
    """The one decision of every publish and of ``release verify``.

    :func:`signer.verification.verify_release_update` on the files'
    digests; the SBOM is read from ``files`` and hashed again, so the bytes
    checked are the bytes hashed (TOCTOU).

    Args:
        state: The repository's current state.
        product: The product role.
        new: The proposed next metadata.
        digests: Length and sha256 of every file, by target path.
        files: Where each file is read from (the SBOM), by target path.
        now: Reference time.
        claimed_version: The version ``bundle.json`` names, if any.

    Raises:
        PublishRefusedError: The update fails a check.
        BundleError: The files are not the release the metadata adds.
        UnknownProductError: ``product`` is not delegated.
    """
    checked = dict(digests)
    sbom_json = b""
    sbom_paths = [p for p in files if p.endswith("/" + SBOM_NAME)]
    if len(sbom_paths) == 1:
        sbom_json = files[sbom_paths[0]].read_bytes()
        checked[sbom_paths[0]] = FileDigest(len(sbom_json), hashlib.sha256(sbom_json).hexdigest())
    return verify_release_update(
        targets=state.targets.signed,
        product=product,
        current=state.product(product),
        new=new,
        files=checked,
        sbom_json=sbom_json,
        now=now,
        claimed_version=claimed_version,
    )


def _check_keys(role: str, keys: Sequence[Key], threshold: int) -> None:
    ids = [k.keyid for k in keys]
    if len(set(ids)) != len(ids):
        raise RepositoryError(f"{role}: the same key is given twice")
    _refuse_duplicate_keys(role, keys)
    if threshold < 1 or threshold > len(keys):
        raise RepositoryError(
            f"{role}: threshold {threshold} needs between 1 and {len(keys)} key(s)"
        )


def _refuse_duplicate_keys(role: str, keys: Iterable[Key]) -> None:
    """Refuse one public key under two keyids: it would count twice (SGN-KEYID-FORGERY)."""
    try:
        pairs = duplicate_keys(keys)
    except ValueError as e:
        raise RepositoryError(f"{role}: {e}") from e
    if pairs:
        first, second = pairs[0]
        raise RepositoryError(
            f"{role}: keys {first[:12]} and {second[:12]} are the same public key written"
            " two ways; a threshold counts people, so each key may appear once"
        )


def _online_from(signers: Sequence[Signer], root: Root) -> OnlineSigners | None:
    by_id = {s.public_key.keyid: s for s in signers}
    snap = next((by_id[k] for k in root.roles["snapshot"].keyids if k in by_id), None)
    ts = next((by_id[k] for k in root.roles["timestamp"].keyids if k in by_id), None)
    if snap is None or ts is None:
        return None
    return OnlineSigners(snap, ts)
