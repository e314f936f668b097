#!/usr/bin/env python3
"""How the TUF repository scales with the number of releases (see bench/README.md).

For repositories of 100, 1,000 and 10,000 releases spread evenly over 50
products, in the delegated layout pumpguard uses (one delegated role per
product) and, as the reference measured in the same run, a FLAT layout (every
target in top-level ``targets.json``), it prints:

(a) the wall time to publish one more release of one product (median of a few
    publishes, each of the next release), through the real code path for the
    delegated layout (``signer.bundle.publish_bundle``) and through an
    equivalent flat publish written here (same loader, serialiser and fsync'd
    writes);
(b) the bytes of metadata a pump of that product downloads to find and verify
    its newest release, measured by a real ``tuf.ngclient.Updater`` whose
    fetcher counts bytes, for a fresh pump (only the bootstrap root) and for an
    up-to-date pump (its cache holds the repository as it was just before the
    newest release).

The repository state is built directly (one signature per metadata file), not
through thousands of publishes, in the real layout, including the superseded
metadata versions a real repository keeps (as empty stand-in files: they are
never read, but they are in the directory as they would be).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.exceptions import DownloadHTTPError
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from pumpguard.fsutil import atomic_write_bytes, exclusive_lock
from pumpguard.release import FIRMWARE_NAME, ReleaseInfo
from sbom import bound_firmware_sha256, build_firmware_sbom
from signer._signing import SERIALIZER, expiry, sign_role, utcnow
from signer.bundle import create_release, publish_bundle, sign_bundle
from signer.repository import (
    CONFIG_NAME,
    DEFAULT_RELEASE_WINDOW,
    OnlineSigners,
    RepoConfig,
    Repository,
    file_digest,
)

PRODUCTS = 50
PRODUCT_THRESHOLD = 2  # two-person release rule
HARDWARE_IDS = ("rev-a", "rev-b")
FIRMWARE_SIZE = 512
DEFAULT_SIZES = (100, 1_000, 10_000)
DEFAULT_REPEAT = 5
GOAL_AT = 10_000
GOAL_PUBLISH_S = 1.0
GOAL_UPDATE_BYTES = 64 * 1024
METADATA_URL = "https://repo.bench.invalid/metadata/"
TARGETS_URL = "https://repo.bench.invalid/targets/"
LAYOUTS = ("delegated", "flat")

# Placeholders of the SBOM template (see ReleaseFactory).
_TPL_PRODUCT = "zzbenchproduct"
_TPL_VERSION = "0.0.0-zzbenchversion"
_TPL_SHA256 = "0123456789abcdef" * 4
_TPL_SERIAL = str(uuid.UUID(int=0))


# ---------------------------------------------------------------------- inputs
def product_name(index: int) -> str:
    """Name of product number ``index``."""
    return f"product-{index:02d}"


@dataclass(frozen=True)
class Keys:
    """Throw-away in-memory keys of one run."""

    root: CryptoSigner
    targets: CryptoSigner
    snapshot: CryptoSigner
    timestamp: CryptoSigner
    #: Release engineer and QA of each product (delegated layout).
    products: dict[str, tuple[CryptoSigner, CryptoSigner]]
    #: The two keys of top-level targets in the flat layout (same two-person rule).
    flat_targets: tuple[CryptoSigner, CryptoSigner]

    @classmethod
    def generate(cls, products: Sequence[str]) -> Keys:
        """Generate every key of a run."""
        gen = CryptoSigner.generate_ed25519
        return cls(
            root=gen(),
            targets=gen(),
            snapshot=gen(),
            timestamp=gen(),
            products={p: (gen(), gen()) for p in products},
            flat_targets=(gen(), gen()),
        )

    @property
    def online(self) -> OnlineSigners:
        """Snapshot and timestamp signers."""
        return OnlineSigners(self.snapshot, self.timestamp)


@dataclass(frozen=True)
class Release:
    """One release: its contract fields and its two files."""

    info: ReleaseInfo
    firmware: bytes
    firmware_sha256: str
    sbom: bytes

    @property
    def targets(self) -> dict[str, TargetFile]:
        """Its two TUF targets, exactly as ``signer.bundle.create_release`` makes them."""
        info = self.info
        return {
            info.firmware_path: TargetFile(
                len(self.firmware),
                {"sha256": self.firmware_sha256},
                info.firmware_path,
                {"custom": info.to_custom()},
            ),
            info.sbom_path: TargetFile.from_data(info.sbom_path, self.sbom, ["sha256"]),
        }

    def files(self) -> dict[str, tuple[str, bytes]]:
        """Target path -> (sha256, content)."""
        return {
            self.info.firmware_path: (self.firmware_sha256, self.firmware),
            self.info.sbom_path: (self.info.sbom_sha256, self.sbom),
        }


def release_version(k: int) -> str:
    """Semantic version of a product's ``k``-th release."""
    return f"2.{k}.0"


def release_notes(product: str, version: str) -> str:
    """Release notes of a typical length."""
    return f"{product} {version}: defect fixes and security updates"


class ReleaseFactory:
    """Makes releases with random firmware and a real SBOM for each.

    ``sbom.build_firmware_sbom`` validates every document against the CycloneDX
    schema (about 50 ms), too slow for 10,000 releases; it builds one template
    here, and each release's SBOM is that document with product, version,
    sha256 and serial number filled in: the same bytes the generator would
    produce, bound to the firmware (checked with ``sbom.bound_firmware_sha256``).
    """

    def __init__(self, seed: int, now: datetime) -> None:
        self._rng = random.Random(seed)
        self._template = build_firmware_sbom(
            product=_TPL_PRODUCT,
            version=_TPL_VERSION,
            firmware_name=FIRMWARE_NAME,
            firmware_sha256=_TPL_SHA256,
            firmware_size=FIRMWARE_SIZE,
            hardware_ids=list(HARDWARE_IDS),
            timestamp=now,
            serial_number=uuid.UUID(int=0),
        ).decode()
        if _TPL_SERIAL not in self._template:
            raise RuntimeError("the SBOM generator no longer takes serial_number as given")
        self._cache: list[Release] = []

    def firmware(self) -> bytes:
        """A new random firmware image."""
        return self._rng.randbytes(FIRMWARE_SIZE)

    def sbom_for(self, product: str, version: str, firmware_sha256: str) -> bytes:
        """The SBOM of one firmware image."""
        serial = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        text = (
            self._template.replace(_TPL_VERSION, version)
            .replace(_TPL_PRODUCT, product)
            .replace(_TPL_SHA256, firmware_sha256)
            .replace(_TPL_SERIAL, serial)
        )
        return text.encode()

    def make(self, product: str, k: int) -> Release:
        """Release number ``k`` (1-based, also its release counter) of ``product``."""
        version = release_version(k)
        firmware = self.firmware()
        fw_sha = hashlib.sha256(firmware).hexdigest()
        sbom = self.sbom_for(product, version, fw_sha)
        if bound_firmware_sha256(sbom) != fw_sha:
            raise RuntimeError("the SBOM template does not bind the firmware")
        info = ReleaseInfo(
            product=product,
            version=version,
            release_counter=k,
            hardware_ids=HARDWARE_IDS,
            sbom_sha256=hashlib.sha256(sbom).hexdigest(),
            notes=release_notes(product, version),
        )
        return Release(info, firmware, fw_sha, sbom)

    def first(self, count: int, products: Sequence[str]) -> list[Release]:
        """The first ``count`` releases of the repository, in publishing order.

        Releases go round-robin over the products, so every size is a prefix of
        the larger ones and the products are evenly filled.
        """
        while len(self._cache) < count:
            g = len(self._cache)
            self._cache.append(self.make(products[g % len(products)], g // len(products) + 1))
        return self._cache[:count]


# ---------------------------------------------------------------- state build
def _sign(
    md: Metadata[Any], delegator: Root | Targets, role: str, signers: Sequence[Signer]
) -> bytes:
    sign_role(md, delegator, role, signers)
    return md.to_bytes(SERIALIZER)


def _new_root(keys: Keys, targets_keys: Sequence[Signer], cfg: RepoConfig, now: datetime) -> Root:
    root = Root(expires=expiry(cfg.expiry_for("root"), now), consistent_snapshot=True)
    for role, signers in (
        ("root", [keys.root]),
        ("targets", targets_keys),
        ("snapshot", [keys.snapshot]),
        ("timestamp", [keys.timestamp]),
    ):
        for s in signers:
            root.add_key(s.public_key, role)
        root.roles[role].threshold = len(signers)
    return root


def _snapshot_and_timestamp(
    root: Root,
    meta: dict[str, MetaFile],
    version: int,
    keys: Keys,
    cfg: RepoConfig,
    now: datetime,
) -> tuple[bytes, bytes]:
    """Signed snapshot and timestamp, as ``Repository._publish_online`` makes them."""
    snapshot = Metadata(
        Snapshot(version, expires=expiry(cfg.expiry_for("snapshot"), now), meta=meta)
    )
    snap_bytes = _sign(snapshot, root, Snapshot.type, [keys.snapshot])
    timestamp = Metadata(
        Timestamp(
            version,
            expires=expiry(cfg.expiry_for("timestamp"), now),
            snapshot_meta=MetaFile.from_data(version, snap_bytes, ["sha256"]),
        )
    )
    return snap_bytes, _sign(timestamp, root, Timestamp.type, [keys.timestamp])


def _write_layout(
    path: Path,
    cfg: RepoConfig,
    metadata: dict[str, bytes],
    superseded: dict[str, int],
    releases: Sequence[Release],
) -> None:
    """Write a repository; the build itself does not fsync (it is not measured)."""
    meta_dir = path / "metadata"
    meta_dir.mkdir(parents=True)
    (path / CONFIG_NAME).write_bytes(cfg.to_json())
    for name, data in metadata.items():
        (meta_dir / name).write_bytes(data)
    # Every version a real repository published before the current one stays
    # there (files are immutable); clients never read them, so they are empty.
    for role, current in superseded.items():
        for version in range(1, current):
            (meta_dir / f"{version}.{role}.json").touch()
    targets_dir = path / "targets"
    for release in releases:
        dest = targets_dir / release.info.product / release.info.version
        dest.mkdir(parents=True)
        for target_path, (sha256, data) in release.files().items():
            (dest / f"{sha256}.{target_path.rpartition('/')[2]}").write_bytes(data)


def _windowed(releases: Sequence[Release], window: int) -> list[Release]:
    """Releases the metadata still lists: each product's newest ``window``, in order."""
    per_product: dict[str, int] = {}
    for r in releases:
        per_product[r.info.product] = per_product.get(r.info.product, 0) + 1
    seen: dict[str, int] = {}
    listed = []
    for r in releases:
        seen[r.info.product] = seen.get(r.info.product, 0) + 1
        if per_product[r.info.product] - seen[r.info.product] < window:
            listed.append(r)
    return listed


def build_delegated(
    path: Path,
    products: Sequence[str],
    releases: Sequence[Release],
    keys: Keys,
    cfg: RepoConfig,
    now: datetime,
) -> None:
    """What ``Repository.init``, one ``add_product`` per product and one publish per
    release would leave."""
    root = _new_root(keys, [keys.targets], cfg, now)
    root_bytes = _sign(Metadata(root), root, Root.type, [keys.root])

    targets = Targets(
        version=1 + len(products),  # init, then one version per add_product
        expires=expiry(cfg.expiry_for("targets"), now),
        delegations=Delegations(keys={}, roles={}),
    )
    assert targets.delegations is not None and targets.delegations.roles is not None
    for product in products:
        targets.delegations.roles[product] = DelegatedRole(
            product, [], PRODUCT_THRESHOLD, terminating=True, paths=[f"{product}/*/*"]
        )
        for s in keys.products[product]:
            targets.add_key(s.public_key, product)
    targets_md = Metadata(targets)
    metadata = {
        "1.root.json": root_bytes,
        f"{targets.version}.targets.json": _sign(targets_md, root, Targets.type, [keys.targets]),
    }
    superseded = {"targets": targets.version}

    by_product: dict[str, list[Release]] = {}
    for r in releases:
        by_product.setdefault(r.info.product, []).append(r)
    meta = {"targets.json": MetaFile(targets.version)}
    for product, rs in by_product.items():
        listed: dict[str, TargetFile] = {}
        for r in rs[-cfg.release_window :]:
            listed.update(r.targets)
        # One metadata version per release of the product (create_release).
        md = Metadata(
            Targets(version=len(rs), expires=expiry(cfg.expiry_for(product), now), targets=listed)
        )
        metadata[f"{len(rs)}.{product}.json"] = _sign(md, targets, product, keys.products[product])
        superseded[product] = len(rs)
        meta[f"{product}.json"] = MetaFile(len(rs))

    # init signs snapshot 1; every add_product and every publish signs one more.
    snap_version = 1 + len(products) + len(releases)
    snap, ts = _snapshot_and_timestamp(root, meta, snap_version, keys, cfg, now)
    metadata[f"{snap_version}.snapshot.json"] = snap
    metadata["timestamp.json"] = ts
    superseded["snapshot"] = snap_version
    _write_layout(path, cfg, metadata, superseded, releases)


def build_flat(
    path: Path,
    releases: Sequence[Release],
    keys: Keys,
    cfg: RepoConfig,
    now: datetime,
) -> None:
    """The same releases, all listed in top-level targets (same release window)."""
    root = _new_root(keys, keys.flat_targets, cfg, now)
    root_bytes = _sign(Metadata(root), root, Root.type, [keys.root])
    listed: dict[str, TargetFile] = {}
    for r in _windowed(releases, cfg.release_window):
        listed.update(r.targets)
    version = 1 + len(releases)  # init, then one version per publish
    targets_md = Metadata(
        Targets(version=version, expires=expiry(cfg.expiry_for("targets"), now), targets=listed)
    )
    metadata = {
        "1.root.json": root_bytes,
        f"{version}.targets.json": _sign(targets_md, root, Targets.type, keys.flat_targets),
    }
    snap, ts = _snapshot_and_timestamp(
        root, {"targets.json": MetaFile(version)}, version, keys, cfg, now
    )
    metadata[f"{version}.snapshot.json"] = snap
    metadata["timestamp.json"] = ts
    _write_layout(path, cfg, metadata, {"targets": version, "snapshot": version}, releases)


# ------------------------------------------------------------------- publish
def publish_delegated(
    repo_dir: Path, scratch: Path, release: Release, keys: Keys, firmware_file: Path
) -> float:
    """Publish ``release`` through the product code; return the publish step's wall time."""
    info = release.info
    bundle = scratch / f"{info.product}-{info.version}.bundle"
    create_release(
        repo=Repository(repo_dir),
        product=info.product,
        version=info.version,
        release_counter=info.release_counter,
        hardware_ids=info.hardware_ids,
        firmware=firmware_file,
        out=bundle,
        notes=info.notes,
    )
    for signer in keys.products[info.product]:
        sign_bundle(bundle, signer)
    start = time.perf_counter()
    publish_bundle(bundle, Repository(repo_dir), keys.online)
    return time.perf_counter() - start


def flat_publish(
    repo_dir: Path,
    info: ReleaseInfo,
    firmware_file: Path,
    sbom_file: Path,
    signers: Sequence[Signer],
    online: OnlineSigners,
    now: datetime | None = None,
) -> None:
    """Publish one release into a flat repository.

    The counterpart of ``Repository.publish`` for a layout without delegations:
    same loader (``Repository.state``), same checks of the files, same
    serialiser and the same fsync'd atomic writes, in the same order (targets,
    metadata, snapshot, timestamp last).
    """
    now = now or utcnow()
    repo = Repository(repo_dir)
    with exclusive_lock(repo_dir / ".lock"):
        state = repo.state()
        assert state.snapshot is not None and state.timestamp is not None
        cfg = repo.config
        root = state.root.signed
        fw = file_digest(firmware_file)
        sbom_json = sbom_file.read_bytes()
        if bound_firmware_sha256(sbom_json) != fw.sha256:
            raise RuntimeError(f"{info.sbom_path} does not describe the firmware")
        sbom_sha = hashlib.sha256(sbom_json).hexdigest()
        if sbom_sha != info.sbom_sha256:
            raise RuntimeError(f"{info.sbom_path} is not the release's SBOM")

        targets = state.targets.signed
        prefix = f"{info.product}/"
        previous = sorted(
            (
                ReleaseInfo.from_custom(t.unrecognized_fields.get("custom"), p)
                for p, t in targets.targets.items()
                if p.startswith(prefix) and p.endswith("/" + FIRMWARE_NAME)
            ),
            key=lambda r: r.release_counter,
        )
        if previous and info.release_counter <= previous[-1].release_counter:
            raise RuntimeError(f"release_counter {info.release_counter} is not greater")
        targets.targets[info.firmware_path] = TargetFile(
            fw.length, {"sha256": fw.sha256}, info.firmware_path, {"custom": info.to_custom()}
        )
        targets.targets[info.sbom_path] = TargetFile(
            len(sbom_json), {"sha256": sbom_sha}, info.sbom_path
        )
        for old in [*previous, info][: -cfg.release_window]:
            targets.targets.pop(old.firmware_path, None)
            targets.targets.pop(old.sbom_path, None)
        targets.version += 1
        targets.expires = expiry(cfg.expiry_for("targets"), now)
        sign_role(state.targets, root, Targets.type, signers)

        for target_path, local, sha in (
            (info.firmware_path, firmware_file, fw.sha256),
            (info.sbom_path, sbom_file, sbom_sha),
        ):
            directory, _, name = target_path.rpartition("/")
            dest = repo.targets_dir / directory
            dest.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(dest / f"{sha}.{name}", local.read_bytes())
        atomic_write_bytes(
            repo.metadata_dir / f"{targets.version}.targets.json",
            state.targets.to_bytes(SERIALIZER),
        )
        snap_version = state.snapshot.signed.version + 1
        snapshot = Metadata(
            Snapshot(
                snap_version,
                expires=expiry(cfg.expiry_for("snapshot"), now),
                meta={"targets.json": MetaFile(targets.version)},
            )
        )
        sign_role(snapshot, root, Snapshot.type, [online.snapshot])
        snap_bytes = snapshot.to_bytes(SERIALIZER)
        timestamp = Metadata(
            Timestamp(
                state.timestamp.signed.version + 1,
                expires=expiry(cfg.expiry_for("timestamp"), now),
                snapshot_meta=MetaFile.from_data(snap_version, snap_bytes, ["sha256"]),
            )
        )
        sign_role(timestamp, root, Timestamp.type, [online.timestamp])
        atomic_write_bytes(repo.metadata_dir / f"{snap_version}.snapshot.json", snap_bytes)
        atomic_write_bytes(repo.metadata_dir / "timestamp.json", timestamp.to_bytes(SERIALIZER))


def publish_flat(
    repo_dir: Path, scratch: Path, release: Release, keys: Keys, firmware_file: Path
) -> float:
    """Publish ``release`` into the flat repository; return the publish's wall time."""
    info = release.info
    sbom_file = scratch / f"{info.product}-{info.version}.sbom.cdx.json"
    sbom_file.write_bytes(release.sbom)
    start = time.perf_counter()
    flat_publish(repo_dir, info, firmware_file, sbom_file, keys.flat_targets, keys.online)
    return time.perf_counter() - start


# ---------------------------------------------------------------------- pumps
class CountingFetcher(FetcherInterface):
    """Serves the repository directory and records the bytes of every download."""

    def __init__(self, repo_dir: Path) -> None:
        self.repo_dir = repo_dir
        self.downloads: list[tuple[str, int]] = []

    def _fetch(self, url: str) -> Iterator[bytes]:
        for base, sub in ((METADATA_URL, "metadata"), (TARGETS_URL, "targets")):
            if url.startswith(base):
                rel = f"{sub}/{url[len(base) :]}"
                break
        else:
            raise DownloadHTTPError(f"{url} is outside the repository", 404)
        try:
            data = (self.repo_dir / rel).read_bytes()
        except FileNotFoundError:
            self.downloads.append((rel, 0))  # e.g. the next root version: 404
            raise DownloadHTTPError(f"{rel} not found", 404) from None
        self.downloads.append((rel, len(data)))
        return iter([data])


def pump_update(
    repo_dir: Path, cache: Path, target_path: str, *, download: bool = False
) -> list[tuple[str, int]]:
    """One pump's update check; return the metadata it downloaded, file by file.

    The pump trusts only the repository's first root (``bootstrap``, never
    trust-on-first-use) and whatever its ``cache`` holds from earlier checks.
    """
    cache.mkdir(parents=True, exist_ok=True)
    fetcher = CountingFetcher(repo_dir)
    big = 1 << 30  # a flat targets.json may exceed python-tuf's default limits
    updater = Updater(
        str(cache),
        METADATA_URL,
        str(cache / "downloads"),
        TARGETS_URL,
        fetcher,
        UpdaterConfig(snapshot_max_length=big, targets_max_length=big),
        bootstrap=(repo_dir / "metadata" / "1.root.json").read_bytes(),
    )
    updater.refresh()
    info = updater.get_targetinfo(target_path)
    if info is None:
        raise RuntimeError(f"the pump cannot find {target_path}")
    if download:  # proves the release verifies end to end; not counted
        (cache / "downloads").mkdir(exist_ok=True)
        updater.download_target(info)
    return [(rel, n) for rel, n in fetcher.downloads if rel.startswith("metadata/")]


# -------------------------------------------------------------------- results
@dataclass
class LayoutResult:
    """What one layout measured at one size."""

    layout: str
    build_s: float
    publish_s: list[float]
    fresh: list[tuple[str, int]] = field(default_factory=list)
    update: list[tuple[str, int]] = field(default_factory=list)

    @property
    def publish_median_s(self) -> float:
        """Median wall time of one publish."""
        return statistics.median(self.publish_s)

    @property
    def fresh_bytes(self) -> int:
        """Metadata bytes a pump with only its bootstrap root downloads."""
        return sum(n for _, n in self.fresh)

    @property
    def update_bytes(self) -> int:
        """Metadata bytes an up-to-date pump downloads for the newest release."""
        return sum(n for _, n in self.update)

    def to_json(self) -> dict[str, Any]:
        """JSON-able figures."""
        return {
            "build_s": round(self.build_s, 3),
            "publish_s": [round(t, 6) for t in self.publish_s],
            "publish_median_s": round(self.publish_median_s, 6),
            "fresh_pump_bytes": self.fresh_bytes,
            "fresh_pump_downloads": [{"file": f, "bytes": n} for f, n in self.fresh],
            "up_to_date_pump_bytes": self.update_bytes,
            "up_to_date_pump_downloads": [{"file": f, "bytes": n} for f, n in self.update],
        }


@dataclass
class SizeResult:
    """Both layouts at one repository size."""

    releases: int
    product: str
    product_releases: int  # releases of the measured product before the timed publishes
    layouts: dict[str, LayoutResult]

    def ratio(self, what: str) -> float:
        """flat / delegated of ``publish``, ``fresh`` or ``update``."""
        d, f = self.layouts["delegated"], self.layouts["flat"]
        if what == "publish":
            return f.publish_median_s / d.publish_median_s
        if what == "fresh":
            return f.fresh_bytes / d.fresh_bytes
        return f.update_bytes / d.update_bytes


def measure_size(
    size: int,
    products: list[str],
    factory: ReleaseFactory,
    keys: Keys,
    cfg: RepoConfig,
    workdir: Path,
    repeat: int,
    log: Console,
) -> SizeResult:
    """Build both layouts with ``size`` releases and measure them."""
    releases = factory.first(size, products)
    product = products[0]  # round-robin: the first product has the most releases
    have = sum(1 for r in releases if r.info.product == product)
    extra = [factory.make(product, have + i + 1) for i in range(repeat)]
    base = workdir / f"{size}"
    scratch = base / "scratch"
    scratch.mkdir(parents=True)
    fw_files = []
    for r in extra:
        f = scratch / f"{r.info.version}.firmware.img"
        f.write_bytes(r.firmware)
        fw_files.append(f)

    results = {}
    for layout in LAYOUTS:
        repo_dir = base / layout
        log.print(f"[dim]{size:>6} releases, {layout}: building ...[/dim]")
        now = utcnow()
        start = time.perf_counter()
        if layout == "delegated":
            build_delegated(repo_dir, products, releases, keys, cfg, now)
            publish = publish_delegated
        else:
            build_flat(repo_dir, releases, keys, cfg, now)
            publish = publish_flat
        build_s = time.perf_counter() - start
        Repository(repo_dir).state()  # the product code loads what was built
        # The build does not fsync; flush it now, or the first timed publish's
        # fsync would pay for committing thousands of unsynced files.
        os.sync()

        times = []
        cache = base / f"{layout}-pump-cache"
        for i, (release, fw_file) in enumerate(zip(extra, fw_files, strict=True)):
            if i == len(extra) - 1:
                # The up-to-date pump last checked just before the newest release.
                pump_update(repo_dir, cache, extra[i - 1].info.firmware_path)
            times.append(publish(repo_dir, scratch, release, keys, fw_file))
        newest = extra[-1].info.firmware_path
        update = pump_update(repo_dir, cache, newest)
        fresh = pump_update(repo_dir, base / f"{layout}-pump-fresh", newest, download=True)
        results[layout] = LayoutResult(layout, build_s, times, fresh, update)
        log.print(
            f"[dim]{size:>6} releases, {layout}: built in {build_s:.1f} s, publish "
            f"{statistics.median(times) * 1000:.1f} ms[/dim]"
        )
    shutil.rmtree(base)
    return SizeResult(size, product, have, results)


# --------------------------------------------------------------------- report
@dataclass(frozen=True)
class Check:
    """One goal and whether this run met it."""

    goal: str
    passed: bool
    detail: str


def check_goals(results: list[SizeResult]) -> list[Check]:
    """Evaluate the issue's goals at the largest size measured."""
    checks = []
    last = max(results, key=lambda r: r.releases)
    at = f"at {last.releases:,} releases"
    if last.releases != GOAL_AT:
        at += f" (goal is stated for {GOAL_AT:,})"
    d = last.layouts["delegated"]
    checks.append(
        Check(
            f"publish <= {GOAL_PUBLISH_S:g} s",
            d.publish_median_s <= GOAL_PUBLISH_S,
            f"{d.publish_median_s * 1000:.1f} ms {at}",
        )
    )
    first = min(results, key=lambda r: r.releases)
    if first is not last:
        growth = d.publish_median_s / first.layouts["delegated"].publish_median_s
        allowed = last.product_releases / first.product_releases
        checks.append(
            Check(
                "publish time grows no faster than the product's releases",
                growth <= allowed,
                f"x{growth:.2f} from {first.releases:,} to {last.releases:,} releases; the "
                f"product's releases grew x{allowed:.0f} "
                f"({first.product_releases} -> {last.product_releases})",
            )
        )
    for label, n in (("up-to-date", d.update_bytes), ("fresh", d.fresh_bytes)):
        checks.append(
            Check(
                f"metadata for an update <= {GOAL_UPDATE_BYTES // 1024} KB ({label} pump)",
                n <= GOAL_UPDATE_BYTES,
                f"{n:,} B {at}",
            )
        )
    return checks


def _verdict(ok: bool) -> str:
    return "[green]PASS[/green]" if ok else "[red]FAIL[/red]"


def print_report(
    console: Console, results: list[SizeResult], checks: list[Check], cfg: RepoConfig
) -> None:
    """The human-readable tables."""
    first = min(results, key=lambda r: r.releases)
    pub = Table(
        title=f"(a) Publish one more release (median of {len(first.layouts['delegated'].publish_s)}"
        " publishes)"
    )
    for col in (
        "releases",
        "product's releases",
        "delegated",
        "flat",
        "flat / delegated",
        "delegated growth",
        "goal",
    ):
        pub.add_column(col, justify="right")
    for r in results:
        d, f = r.layouts["delegated"], r.layouts["flat"]
        growth = d.publish_median_s / first.layouts["delegated"].publish_median_s
        allowed = r.product_releases / first.product_releases
        ok = d.publish_median_s <= GOAL_PUBLISH_S and growth <= allowed
        pub.add_row(
            f"{r.releases:,}",
            f"{r.product_releases:,}",
            f"{d.publish_median_s * 1000:.1f} ms",
            f"{f.publish_median_s * 1000:.1f} ms",
            f"{r.ratio('publish'):.2f}",
            f"x{growth:.2f} (<= x{allowed:.0f})",
            _verdict(ok),
        )
    console.print(pub)

    size = Table(title="(b) Metadata a pump downloads to find and verify its newest release")
    for col in ("releases", "pump", "delegated", "flat", "flat / delegated", "goal"):
        size.add_column(col, justify="right")
    for r in results:
        d, f = r.layouts["delegated"], r.layouts["flat"]
        for label, dn, fn, what in (
            ("up-to-date", d.update_bytes, f.update_bytes, "update"),
            ("fresh", d.fresh_bytes, f.fresh_bytes, "fresh"),
        ):
            size.add_row(
                f"{r.releases:,}",
                label,
                f"{dn:,} B",
                f"{fn:,} B",
                f"{r.ratio(what):.1f}",
                _verdict(dn <= GOAL_UPDATE_BYTES),
            )
    console.print(size)

    last = max(results, key=lambda r: r.releases)
    for layout in LAYOUTS:
        lr = last.layouts[layout]
        for label, files in (("up-to-date", lr.update), ("fresh", lr.fresh)):
            parts = ", ".join(f"{name.removeprefix('metadata/')} {n:,}" for name, n in files)
            console.print(f"[dim]{layout} {label} pump at {last.releases:,}: {parts}[/dim]")
    console.print(
        f"[dim]{PRODUCTS} products, release window {cfg.release_window}, "
        f"{PRODUCT_THRESHOLD} signatures per release, flat lists the same releases[/dim]"
    )
    console.print("Goals:")
    for c in checks:
        console.print(f"  {_verdict(c.passed)}  {c.goal}: {c.detail}")


def parse_sizes(text: str) -> list[int]:
    """``100,1000`` -> [100, 1000]."""
    try:
        sizes = sorted({int(s.replace("_", "")) for s in text.split(",") if s.strip()})
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--sizes takes integers, e.g. 100,1000: {e}") from e
    if not sizes or sizes[0] < PRODUCTS:
        raise argparse.ArgumentTypeError(
            f"every size must be at least {PRODUCTS} (one per product)"
        )
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status is 1 when a goal is missed."""
    parser = argparse.ArgumentParser(
        description=(
            "Publish time and pump download size of pumpguard repositories of many "
            f"releases over {PRODUCTS} products, delegated layout vs a flat reference."
        )
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=",".join(str(n) for n in DEFAULT_SIZES),
        help="comma-separated numbers of releases (default: %(default)s)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=DEFAULT_REPEAT,
        help="timed publishes per size and layout (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random firmware")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where to build the repositories (default: a temporary directory; "
        "fsync costs depend on its file system)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 2:
        parser.error("--repeat must be at least 2")

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    log = Console(stderr=True)
    products = [product_name(i) for i in range(PRODUCTS)]
    cfg = RepoConfig(release_window=DEFAULT_RELEASE_WINDOW)
    keys = Keys.generate(products)
    factory = ReleaseFactory(args.seed, utcnow())

    started = time.perf_counter()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pumpguard-bench-", dir=args.workdir) as tmp:
        results = [
            measure_size(n, products, factory, keys, cfg, Path(tmp), args.repeat, log)
            for n in args.sizes
        ]
    checks = check_goals(results)
    elapsed = time.perf_counter() - started

    if args.json:
        out = {
            "products": PRODUCTS,
            "release_window": cfg.release_window,
            "threshold": PRODUCT_THRESHOLD,
            "repeat": args.repeat,
            "goals": {
                "at_releases": GOAL_AT,
                "publish_s": GOAL_PUBLISH_S,
                "update_bytes": GOAL_UPDATE_BYTES,
            },
            "sizes": [
                {
                    "releases": r.releases,
                    "product": r.product,
                    "product_releases": r.product_releases,
                    "ratio_flat_over_delegated": {
                        "publish": round(r.ratio("publish"), 3),
                        "up_to_date_pump_bytes": round(r.ratio("update"), 3),
                        "fresh_pump_bytes": round(r.ratio("fresh"), 3),
                    },
                    **{name: lr.to_json() for name, lr in r.layouts.items()},
                }
                for r in results
            ],
            "checks": [{"goal": c.goal, "pass": c.passed, "detail": c.detail} for c in checks],
            "elapsed_s": round(elapsed, 1),
        }
        print(json.dumps(out, indent=2))
    else:
        print_report(console, results, checks, cfg)
        console.print(f"[dim]total {elapsed:.0f} s[/dim]")
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
