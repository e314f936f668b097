"""The attack matrix, end to end: each attack ends with nothing bootable written.

Every case runs the real agent against the real server on loopback; the
attacker controls the server: its online keys (snapshot, timestamp), the files
it serves and the assignments it hands out (:class:`agent_support.LyingServer`),
and may hold one release engineer's key. In every case the pump keeps booting
its committed image, no trial is started, the update's slot is not recorded as
holding an image, and the reason reaches the server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, TargetFile, Timestamp

from agent_support import World, run_pump
from device_agent.agent import Agent
from device_agent.state import AgentState
from http_support import serve
from pumpguard.release import firmware_path
from repo_support import PRODUCT
from signer._signing import utcnow
from tuf_attacks import current, forge_online, md_path, product_md, resign

DEVICE = "pump-0001"


def _target_file(world: World, version: str) -> Path:
    md = product_md(world.repo_env)
    target = md.signed.targets[firmware_path(PRODUCT, version)]
    name = f"{target.hashes['sha256']}.firmware.img"
    return world.server_repo / "targets" / PRODUCT / version / name


def _evil_release(world: World) -> None:
    """A product role listing firmware the release engineers never signed."""
    env = world.repo_env
    md = product_md(env)
    legit = md.signed.targets[firmware_path(PRODUCT, "2.0.0")]
    evil = TargetFile.from_data(firmware_path(PRODUCT, "6.6.6"), b"evil firmware", ["sha256"])
    custom = dict(legit.custom)
    custom["pumpguard"] = {**custom["pumpguard"], "version": "6.6.6", "release_counter": 66}
    evil.unrecognized_fields = {"custom": custom}
    md.signed.targets[evil.path] = evil
    md.signed.version += 1
    world.__dict__["_evil_md"] = md
    world.lie(PRODUCT, "6.6.6", 66)


def unsigned_product_metadata(world: World) -> None:
    _evil_release(world)
    md = world.__dict__["_evil_md"]
    forge_online(world.repo_env, product=resign(md, world.repo_env, ("outsider", "re2")))


def below_threshold(world: World) -> None:
    _evil_release(world)
    md = world.__dict__["_evil_md"]
    forge_online(world.repo_env, product=resign(md, world.repo_env, ("re1",)))


def badly_signed_timestamp(world: World) -> None:
    path = md_path(world.repo_env, "timestamp.json")
    ts = Metadata[Timestamp].from_bytes(path.read_bytes())
    ts.signed.version += 1
    path.write_bytes(ts.to_bytes())  # old signature, new content


def rolled_back_timestamp(world: World) -> None:
    # The server (holding the timestamp key) re-signs an older timestamp.
    env = world.repo_env
    path = md_path(env, "timestamp.json")
    ts = Metadata[Timestamp].from_bytes(path.read_bytes())
    ts.signed.version -= 1
    ts.signatures.clear()
    ts.sign(env.signer("timestamp"))
    path.write_bytes(ts.to_bytes())


def expired_metadata(world: World) -> None:
    env = world.repo_env
    env.repo.refresh(env.online, force=True, now=utcnow() - timedelta(days=400))


def rolled_back_snapshot(world: World) -> None:
    env = world.repo_env
    _, snap = current(env)
    forge_online(env, snapshot_version=snap.signed.version - 1)


def rolled_back_product_metadata(world: World) -> None:
    env = world.repo_env
    _, snap = current(env)
    older = snap.signed.meta[f"{PRODUCT}.json"].version - 1
    md = Metadata.from_bytes(md_path(env, f"{older}.{PRODUCT}.json").read_bytes())
    forge_online(env, product=md)  # type: ignore[arg-type]


def mix_and_match(world: World) -> None:
    env = world.repo_env
    _, snap = current(env)
    version = snap.signed.meta[f"{PRODUCT}.json"].version
    older = md_path(env, f"{version - 1}.{PRODUCT}.json").read_bytes()
    md_path(env, f"{version}.{PRODUCT}.json").write_bytes(older)


def endless_metadata(world: World) -> None:
    path = md_path(world.repo_env, "timestamp.json")
    path.write_bytes(path.read_bytes()[:-1] + b" " * (20 * 1024 * 1024) + b"}")


def endless_firmware(world: World) -> None:
    path = _target_file(world, "2.0.0")
    path.write_bytes(path.read_bytes() + b"\0" * (4 * 1024 * 1024))


def substituted_firmware(world: World) -> None:
    path = _target_file(world, "2.0.0")
    path.write_bytes(b"\x42" * len(path.read_bytes()))


def truncated_firmware(world: World) -> None:
    path = _target_file(world, "2.0.0")
    path.write_bytes(path.read_bytes()[:1000])


def bit_flipped_firmware(world: World) -> None:
    path = _target_file(world, "2.0.0")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def other_hardware(world: World) -> None:
    world.publish("3.0.0", 4, hardware_ids=("rev-a",))
    world.lie(PRODUCT, "3.0.0", 4)


def older_release(world: World) -> None:
    # 1.9.0 (counter 2) is signed and published, but this pump's counter is
    # already 3: a server assigning 1.9.0 replays an old, vulnerable release.
    world.lie(PRODUCT, "1.9.0", 2)


def outside_delegation(world: World) -> None:
    world.lie("other-pump", "1.0.0", 9)


def traversal(world: World) -> None:
    world.lie(PRODUCT, "9.9.9", 9, path=f"{PRODUCT}/9.9.9/../../../etc/passwd")


ATTACKS: list[tuple[Callable[[World], None], str, int]] = [
    # (attack, reason reported, factory counter of the pump)
    (unsigned_product_metadata, "tuf-unsigned-metadata", 1),
    (below_threshold, "tuf-unsigned-metadata", 1),
    (badly_signed_timestamp, "tuf-unsigned-metadata", 1),
    (rolled_back_timestamp, "tuf-bad-version-number", 1),
    (expired_metadata, "tuf-expired-metadata", 1),
    (rolled_back_snapshot, "tuf-bad-version-number", 1),
    (rolled_back_product_metadata, "tuf-bad-version-number", 1),
    (mix_and_match, "tuf-bad-version-number", 1),
    (endless_metadata, "tuf-download-length-mismatch", 1),
    (endless_firmware, "length", 1),
    (substituted_firmware, "hash-mismatch", 1),
    (truncated_firmware, "length", 1),
    (bit_flipped_firmware, "hash-mismatch", 1),
    (other_hardware, "hardware-id", 1),
    (older_release, "rollback", 3),
    (outside_delegation, "target-path", 1),
    (traversal, "target-path", 1),
]


#: Attacks on the image itself are only detectable once it is downloaded: the
#: bytes land in the inactive slot, which is never made bootable.
FIRMWARE_ATTACKS = (
    endless_firmware,
    substituted_firmware,
    truncated_firmware,
    bit_flipped_firmware,
)


@pytest.mark.parametrize(
    ("attack", "reason", "counter"), ATTACKS, ids=[a.__name__ for a, _, _ in ATTACKS]
)
def test_attack_is_refused_before_anything_becomes_bootable(
    world: World,
    tmp_path: Path,
    attack: Callable[[World], None],
    reason: str,
    counter: int,
) -> None:
    # Two releases, so that there is older metadata to roll back to.
    world.publish("1.9.0", 2)
    world.publish("2.0.0", 3)
    pump = world.new_pump(
        tmp_path / "pump",
        DEVICE,
        factory_version="2.0.0" if counter > 1 else "1.0.0",
        factory_counter=counter,
    )
    # The pump has seen the repository before the attack (rollback attacks
    # need something to roll back from); with nothing assigned yet.
    world.lie(PRODUCT, "1.0.0", 1, path=f"{PRODUCT}/1.0.0/firmware.img")
    Agent(pump.config())._tuf().refresh()
    world.liar.assigned = None
    attack(world)

    assert run_pump(pump) is AgentState.IDLE

    config = pump.config()
    agent = Agent(config)
    env = agent.boot.read()
    assert (env.committed, env.trial) == ("a", None)
    assert pump.booted_image() == ("a", config.slots["a"].read_bytes())
    assert "b" not in agent.slot_records.read()
    assert agent.counter.read() == counter
    if attack not in FIRMWARE_ATTACKS:
        # Refused before the download: not a byte in the inactive slot.
        assert config.slots["b"].read_bytes() == b""
    reported = [e["detail"].get("reason") for e in world.events(DEVICE) if e["kind"] == "error"]
    assert reason in reported, reported
    assert world.device(DEVICE)["status"]["last_update"]["result"] == "failed"


@pytest.mark.parametrize("what", ["metadata/timestamp.json", "firmware"])
def test_slow_retrieval_is_abandoned_and_reported(world: World, tmp_path: Path, what: str) -> None:
    """A mirror that trickles bytes cannot hold the pump forever (TUF slow retrieval)."""
    world.publish("2.0.0", 2, size=256 * 1024)
    pump = world.new_pump(tmp_path / "pump", DEVICE)
    with serve(world.server_repo) as cdn:
        text = pump.config_path.read_text().replace(
            "metadata_deadline = 30",
            f"metadata_deadline = 2\nmin_firmware_rate = 65536\n"
            f'metadata_url = "{cdn.url}/metadata"\ntargets_url = "{cdn.url}/targets"',
        )
        pump.config_path.write_text(text)
        path = what
        if what == "firmware":
            path = str(_target_file(world, "2.0.0").relative_to(world.server_repo))
        cdn.bad.trickle[path] = 0.05
        start = time.monotonic()
        run_pump(pump, max_steps=3)
        assert time.monotonic() - start < 20
    # The mirror is gone; the next poll still delivers the queued report.
    run_pump(pump, max_steps=3)
    config = pump.config()
    agent = Agent(config)
    assert agent.boot.read().trial is None
    assert pump.booted_image()[0] == "a"
    assert "b" not in agent.slot_records.read()
    reported = [e["detail"].get("reason") for e in world.events(DEVICE) if e["kind"] == "error"]
    assert "slow-retrieval" in reported, reported
