"""The agent's TUF client against real signed repositories over loopback HTTP.

The attack matrix of the device-agent issue, TUF part: each attack ends with
UpdateRefusedError (or a reported transfer error for slow retrieval), its
reason, and the slot untouched; for a corrupt firmware image the slot is
written but never reported complete and fails :func:`verify_slot`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, MetaFile, TargetFile
from tuf.ngclient import UpdaterConfig

from device_agent._durable import crash_hook
from device_agent.download import download_to_slot, verify_slot
from device_agent.errors import AgentConfigError, TransferError, UpdateRefusedError
from device_agent.fetcher import AgentFetcher
from device_agent.tuf_client import (
    DEFAULT_CONFIG,
    TufClient,
    VerifiedTarget,
    refusal_reason,
)
from http_support import HttpServer, serve
from pumpguard.release import firmware_path
from repo_support import PRODUCT, RepoEnv
from signer._signing import utcnow
from signer.bundle import create_release, publish_bundle, sign_bundle
from signer.keys import load_public_key
from tuf_attacks import current, forge_online, md_path, product_md, resign

FW_SIZE = 200_000


# ------------------------------------------------------------------ helpers
def publish(env: RepoEnv, version: str, counter: int, *, product: str = PRODUCT) -> bytes:
    """Sign (re1 + qa1) and publish a release with a random firmware image."""
    image = os.urandom(FW_SIZE)
    fw = env.work / f"fw-{product}-{version}.img"
    fw.write_bytes(image)
    out = env.work / f"bundle-{product}-{version}"
    create_release(
        repo=env.repo,
        product=product,
        version=version,
        release_counter=counter,
        hardware_ids=("rev-b",),
        firmware=fw,
        out=out,
    )
    for name in ("re1", "qa1"):
        sign_bundle(out, env.signer(name))
    publish_bundle(out, env.repo, env.online)
    return image


@dataclass
class Pump:
    """A pump's TUF client, its inactive slot and what the download reported."""

    client: TufClient
    slot: Path
    checkpoints: list[int]
    fetcher: AgentFetcher

    def update(self, version: str, product: str = PRODUCT) -> VerifiedTarget:
        return self.update_path(firmware_path(product, version), product)

    def update_path(self, path: str, product: str = PRODUCT) -> VerifiedTarget:
        self.client.refresh()
        target = self.client.find_firmware(path, product)
        download_to_slot(self.fetcher, target, self.slot, on_checkpoint=self.checkpoints.append)
        verify_slot(self.slot, target.target_file)
        return target


@pytest.fixture
def server(repo_env: RepoEnv) -> Iterator[HttpServer]:
    with serve(repo_env.path) as s:
        yield s


@pytest.fixture
def make_pump(repo_env: RepoEnv, server: HttpServer) -> Callable[..., Pump]:
    def make(
        name: str = "pump", config: UpdaterConfig | None = None, **fetcher_options: float
    ) -> Pump:
        home = repo_env.work / name
        fetcher = AgentFetcher(version="0.1.0", **fetcher_options)  # type: ignore[arg-type]
        client = TufClient(
            home / "tuf",
            f"{server.url}/metadata",
            f"{server.url}/targets",
            (repo_env.path / "metadata" / "1.root.json").read_bytes(),
            fetcher,
            config,
        )
        return Pump(client, home / "slot-b", [], fetcher)

    return make


def refused(pump: Pump, reason: str, version: str = "1.0.0") -> UpdateRefusedError:
    """Run an update that must be refused before any byte reaches the slot."""
    with pytest.raises(UpdateRefusedError) as e:
        pump.update(version)
    assert e.value.reason == reason, str(e.value)
    assert not pump.slot.exists()
    assert pump.checkpoints == []
    return e.value


# ------------------------------------------------------------------ happy path
def test_verifies_and_streams_published_firmware(
    repo_env: RepoEnv, make_pump: Callable[..., Pump], server: HttpServer
) -> None:
    image = publish(repo_env, "1.0.0", 1)
    pump = make_pump()
    target = pump.update("1.0.0")
    assert pump.slot.read_bytes() == image
    assert pump.checkpoints == [FW_SIZE]
    assert target.release.release_counter == 1
    assert target.release.hardware_ids == ("rev-b",)
    sha = target.target_file.hashes["sha256"]
    assert target.url == f"{server.url}/targets/{PRODUCT}/1.0.0/{sha}.firmware.img"
    assert all(r.user_agent == "pumpguard-agent/0.1.0" for r in server.log)


def test_metadata_cache_is_written_durably(
    repo_env: RepoEnv, make_pump: Callable[..., Pump]
) -> None:
    publish(repo_env, "1.0.0", 1)
    pump = make_pump()
    labels: list[str] = []
    with crash_hook(labels.append):
        pump.client.refresh()
        pump.client.find_firmware(firmware_path(PRODUCT, "1.0.0"), PRODUCT)
    for name in ("timestamp.json", "snapshot.json", "targets.json", f"{PRODUCT}.json"):
        assert f"fsync tuf {name}" in labels
        assert f"rename tuf {name}" in labels
    assert (pump.client.metadata_dir / f"{PRODUCT}.json").is_file()


def test_find_firmware_refreshes_implicitly_and_skips_identical_writes(
    repo_env: RepoEnv, make_pump: Callable[..., Pump]
) -> None:
    publish(repo_env, "1.0.0", 1)
    pump = make_pump()
    assert pump.client.find_firmware(firmware_path(PRODUCT, "1.0.0"), PRODUCT).length == FW_SIZE
    labels: list[str] = []
    with crash_hook(labels.append):
        pump.client.refresh()  # nothing new: no metadata file is rewritten
    assert not [label for label in labels if label.startswith(("write", "rename"))]


def test_second_poll_sees_new_release(repo_env: RepoEnv, make_pump: Callable[..., Pump]) -> None:
    publish(repo_env, "1.0.0", 1)
    pump = make_pump()
    pump.update("1.0.0")
    image = publish(repo_env, "1.1.0", 2)
    pump.checkpoints.clear()
    assert pump.update("1.1.0").release.release_counter == 2
    assert pump.slot.read_bytes() == image


def test_cached_root_does_not_replace_bootstrap(
    repo_env: RepoEnv, make_pump: Callable[..., Pump]
) -> None:
    """Never trust-on-first-use: a root planted in the cache is not an anchor."""
    publish(repo_env, "1.0.0", 1)
    pump = make_pump()
    planted = Metadata.from_bytes(md_path(repo_env, "1.root.json").read_bytes())
    planted.signed.version = 2
    for role in ("root", "targets", "snapshot", "timestamp"):
        for keyid in list(planted.signed.roles[role].keyids):
            planted.signed.revoke_key(keyid, role)
        planted.signed.add_key(load_public_key(repo_env.pub("outsider")), role)
        planted.signed.roles[role].threshold = 1
    planted.sign(repo_env.signer("outsider"))
    history = pump.client.metadata_dir / "root_history"
    (history / "2.root.json").write_bytes(planted.to_bytes())
    # The update verifies under the real keys, and the planted root (it does
    # not chain to the bootstrap root, TUF spec 5.3.4) stays untrusted.
    pump.update("1.0.0")
    assert (pump.client.metadata_dir / "root.json").resolve().name == "1.root.json"


def test_invalid_bootstrap_root_is_a_config_error(repo_env: RepoEnv, tmp_path: Path) -> None:
    with pytest.raises(AgentConfigError, match="bootstrap"):
        TufClient(tmp_path, "http://127.0.0.1:1/m", "http://127.0.0.1:1/t", b"{}", AgentFetcher())


def test_clear_text_to_remote_host_is_a_config_error(repo_env: RepoEnv, tmp_path: Path) -> None:
    root = (repo_env.path / "metadata" / "1.root.json").read_bytes()
    with pytest.raises(AgentConfigError, match="https"):
        TufClient(tmp_path, "http://updates.example.com/m", "https://x/t", root, AgentFetcher())


# ------------------------------------------------------- metadata attacks
@pytest.mark.parametrize(
    ("attack", "signers"),
    [
        ("unsigned", ()),
        ("below-threshold", ("re1",)),
        ("outsider-key", ("re1", "outsider")),
        ("tampered-after-signing", None),
    ],
)
def test_rejects_badly_signed_product_metadata(
    repo_env: RepoEnv,
    make_pump: Callable[..., Pump],
    server: HttpServer,
    attack: str,
    signers: tuple[str, ...] | None,
) -> None:
    publish(repo_env, "1.0.0", 1)
    md = product_md(repo_env)
    name = f"metadata/{md.signed.version}.{PRODUCT}.json"
    if signers is None:
        target = md.signed.targets[firmware_path(PRODUCT, "1.0.0")]
        target.unrecognized_fields["custom"]["pumpguard"]["hardware_ids"] = ["rev-x"]
    else:
        resign(md, repo_env, signers)
    server.bad.substitute[name] = md.to_bytes()
    error = refused(make_pump(), "tuf-unsigned-metadata")
    assert PRODUCT in str(error)


def test_rejects_timestamp_signed_by_wrong_key(
    repo_env: RepoEnv, make_pump: Callable[..., Pump], server: HttpServer
) -> None:
    publish(repo_env, "1.0.0", 1)
    ts, _ = current(repo_env)
    ts.signed.version += 1
    ts.signatures.clear()
    ts.sign(repo_env.signer("outsider"))
    server.bad.substitute["metadata/timestamp.json"] = ts.to_bytes()
    refused(make_pump(), "tuf-unsigned-metadata")


def test_rejects_rolled_back_timestamp(
    repo_env: RepoEnv, make_pump: Callable[..., Pump], server: HttpServer
) -> None:
    publish(repo_env, "1.0.0", 1)
    old = md_path(repo_env, "timestamp.json").read_bytes()
    publish(repo_env, "1.1.0", 2)
    pump = make_pump()
    pump.client.refresh()  # the pump has seen the newer timestamp
    server.bad.substitute["metadata/timestamp.json"] = old
    refused(pump, "tuf-bad-version-number")


def test_rejects_rolled_back_snapshot(repo_env: RepoEnv, make_pump: Callable[..., Pump]) -> None:
    """A stolen timestamp key points a new timestamp at an older snapshot."""
    publish(repo_env, "1.0.0", 1)
    _, old_snapshot = current(repo_env)
    publish(repo_env, "1.1.0", 2)
    pump = make_pump()
    pump.client.refresh()
    forge_online(repo_env, snapshot_version=old_snapshot.signed.version)
    refused(pump, "tuf-bad-version-number")


def test_rejects_rolled_back_product_metadata(
    repo_env: RepoEnv, make_pump: Callable[..., Pump]
) -> None:
    """Stolen online keys list the product's older metadata in a new snapshot."""
    publish(repo_env, "1.0.0", 1)
    old_version = product_md(repo_env).signed.version
    publish(repo_env, "1.1.0", 2)
    pump = make_pump()
    pump.client.refresh()

    def roll_back(meta: dict[str, MetaFile]) -> None:
        meta[f"{PRODUCT}.json"] = MetaFile(old_version)

    forge_online(repo_env, snapshot_meta=roll_back)
    refused(pump, "tuf-bad-version-number")


def test_rejects_expired_metadata(repo_env: RepoEnv, make_pump: Callable[..., Pump]) -> None:
    """Freeze attack: metadata whose expiry has passed is never used."""
    publish(repo_env, "1.0.0", 1)
    repo_env.repo.refresh(repo_env.online, force=True, now=utcnow() - timedelta(days=400))
    refused(make_pump(), "tuf-expired-metadata")


@pytest.mark.parametrize("served", ["older-product-metadata", "older-snapshot"])
def test_rejects_mix_and_match(
    repo_env: RepoEnv, make_pump: Callable[..., Pump], server: HttpServer, served: str
) -> None:
    """Files of different repository states are never combined."""
    publish(repo_env, "1.0.0", 1)
    _, old_snap = current(repo_env)
    old_product = product_md(repo_env)
    publish(repo_env, "1.0.1", 2)
    _, snap = current(repo_env)
    if served == "older-product-metadata":
        new_version = snap.signed.meta[f"{PRODUCT}.json"].version
        server.bad.substitute[f"metadata/{new_version}.{PRODUCT}.json"] = old_product.to_bytes()
        reason = "tuf-bad-version-number"
    else:
        server.bad.substitute[f"metadata/{snap.signed.version}.snapshot.json"] = md_path(
            repo_env, f"{old_snap.signed.version}.snapshot.json"
        ).read_bytes()
        reason = "tuf-length-or-hash-mismatch"
    refused(make_pump(), reason)


@pytest.mark.parametrize("role", ["timestamp", "product"])
def test_rejects_oversized_metadata(
    repo_env: RepoEnv, make_pump: Callable[..., Pump], server: HttpServer, role: str
) -> None:
    """Endless data: a metadata file longer than its cap is dropped unread."""
    publish(repo_env, "1.0.0", 1)
    if role == "timestamp":
        server.bad.endless.add("metadata/timestamp.json")
    else:
        version = product_md(repo_env).signed.version
        server.bad.endless.add(f"metadata/{version}.{PRODUCT}.json")
    config = UpdaterConfig(**{**DEFAULT_CONFIG.__dict__, "targets_max_length": 64 * 1024})
    refused(make_pump(config=config), "tuf-download-length-mismatch")


def test_slow_metadata_is_a_reported_transfer_error(
    repo_env: RepoEnv, make_pump: Callable[..., Pump], server: HttpServer
) -> None:
    publish(repo_env, "1.0.0", 1)
    server.bad.trickle["metadata/timestamp.json"] = 0.05
    pump = make_pump(deadline=0.3)
    with pytest.raises(TransferError) as e:
        pump.update("1.0.0")
    assert e.value.reason == "slow-retrieval"
    assert not pump.slot.exists()


def test_unreachable_repository_is_a_transfer_error(
    repo_env: RepoEnv, make_pump: Callable[..., Pump], server: HttpServer
) -> None:
    publish(repo_env, "1.0.0", 1)
    server.bad.substitute.clear()
    (repo_env.path / "metadata" / "timestamp.json").unlink()
    with pytest.raises(TransferError) as e:
        make_pump().update("1.0.0")
    assert e.value.reason == "http-404"


# ------------------------------------------------------- firmware attacks
@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        ("substituted", "hash-mismatch"),
        ("bit-flipped", "hash-mismatch"),
        ("truncated", "length"),
        ("endless", "length"),
    ],
)
def test_rejects_corrupt_firmware(
    repo_env: RepoEnv,
    make_pump: Callable[..., Pump],
    server: HttpServer,
    attack: str,
    reason: str,
) -> None:
    publish(repo_env, "1.0.0", 1)
    pump = make_pump()
    pump.client.refresh()
    target = pump.client.find_firmware(firmware_path(PRODUCT, "1.0.0"), PRODUCT)
    served = target.url.removeprefix(server.url + "/")
    if attack == "substituted":
        server.bad.substitute[served] = os.urandom(FW_SIZE)
    elif attack == "bit-flipped":
        server.bad.flip[served] = FW_SIZE // 2
    elif attack == "truncated":
        server.bad.truncate[served] = FW_SIZE - 1000
    else:
        server.bad.endless.add(served)
    with pytest.raises(UpdateRefusedError) as e:
        pump.update("1.0.0")
    assert e.value.reason == reason
    # Single pass: bytes reached the inactive slot, but it is never reported
    # complete and can never pass the check before it may boot.
    assert FW_SIZE not in pump.checkpoints
    with pytest.raises(UpdateRefusedError):
        verify_slot(pump.slot, target.target_file)


def test_slow_firmware_is_a_reported_transfer_error(
    repo_env: RepoEnv, make_pump: Callable[..., Pump], server: HttpServer
) -> None:
    publish(repo_env, "1.0.0", 1)
    pump = make_pump(deadline=0.3, min_rate=1e9)
    pump.client.refresh()
    target = pump.client.find_firmware(firmware_path(PRODUCT, "1.0.0"), PRODUCT)
    server.bad.trickle[target.url.removeprefix(server.url + "/")] = 0.05
    with pytest.raises(TransferError) as e:
        download_to_slot(pump.fetcher, target, pump.slot, on_checkpoint=pump.checkpoints.append)
    assert e.value.reason == "slow-retrieval"
    assert pump.checkpoints == []


# ------------------------------------------------------- target selection
@pytest.mark.parametrize(
    "path",
    [
        "../../etc/passwd",
        f"/{PRODUCT}/1.0.0/firmware.img",
        f"{PRODUCT}/../other/firmware.img",
        f"{PRODUCT}/1.0.0/../../firmware.img",
        f"{PRODUCT}/1.0.0/firmware.img/..",
        f"{PRODUCT}//firmware.img",
        f"{PRODUCT}/1.0/firmware.img",
        f"{PRODUCT}/1.0.0/sbom.cdx.json",
        f"{PRODUCT}/1.0.0/firmware.img\x00.sig",
        f"{PRODUCT}\\1.0.0\\firmware.img",
        "other-product/1.0.0/firmware.img",
    ],
)
def test_rejects_malicious_target_path(
    repo_env: RepoEnv, make_pump: Callable[..., Pump], server: HttpServer, path: str
) -> None:
    publish(repo_env, "1.0.0", 1)
    pump = make_pump()
    with pytest.raises(UpdateRefusedError) as e:
        pump.client.find_firmware(path, PRODUCT)
    assert e.value.reason == "target-path"
    assert server.log == []  # refused before any lookup
    assert not pump.slot.exists()


def test_rejects_target_outside_product_delegation(
    repo_env: RepoEnv, make_pump: Callable[..., Pump]
) -> None:
    """sigma-spectrum's keys sign firmware for another product: never found."""
    env = repo_env
    other = "other-pump"
    env.repo.add_product(
        other, [load_public_key(env.pub("re2"))], 1, [env.signer("targets")], env.online
    )
    publish(env, "1.0.0", 1)
    md = product_md(env)
    stolen = TargetFile.from_data(firmware_path(other, "9.0.0"), b"evil", ["sha256"])
    legit = md.signed.targets[firmware_path(PRODUCT, "1.0.0")]
    stolen.unrecognized_fields = {"custom": legit.custom}
    md.signed.targets[stolen.path] = stolen
    md.signed.version += 1
    forge_online(env, product=resign(md, env, ("re1", "qa1")))
    pump = make_pump()
    with pytest.raises(UpdateRefusedError) as e:
        pump.update_path(stolen.path, other)
    assert e.value.reason == "target-not-found"
    assert not pump.slot.exists()


def test_unknown_version_is_not_found(repo_env: RepoEnv, make_pump: Callable[..., Pump]) -> None:
    publish(repo_env, "1.0.0", 1)
    refused(make_pump(), "target-not-found", version="1.0.1")


def test_product_without_any_release_is_not_found(
    repo_env: RepoEnv, make_pump: Callable[..., Pump]
) -> None:
    """Delegated in targets.json but not yet in snapshot: no signed release."""
    refused(make_pump(), "target-not-found")


def test_rejects_broken_release_contract(repo_env: RepoEnv, make_pump: Callable[..., Pump]) -> None:
    """Even correctly signed, a firmware target without the contract is refused."""
    publish(repo_env, "1.0.0", 1)
    md = product_md(repo_env)
    md.signed.targets[firmware_path(PRODUCT, "1.0.0")].unrecognized_fields["custom"] = {}
    md.signed.version += 1
    forge_online(repo_env, product=resign(md, repo_env, ("re1", "qa1")))
    refused(make_pump(), "release-contract")


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("UnsignedMetadataError", "tuf-unsigned-metadata"),
        ("BadVersionNumberError", "tuf-bad-version-number"),
        ("EqualVersionNumberError", "tuf-bad-version-number"),
        ("ExpiredMetadataError", "tuf-expired-metadata"),
        ("LengthOrHashMismatchError", "tuf-length-or-hash-mismatch"),
        ("RepositoryError", "tuf-repository"),
    ],
)
def test_refusal_reasons_name_the_tuf_error(error: str, reason: str) -> None:
    from tuf.api import exceptions

    assert refusal_reason(getattr(exceptions, error)("x")) == reason
