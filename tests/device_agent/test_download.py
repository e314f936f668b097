"""Single-pass streaming of a firmware target into a slot, with resume."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_agent_config import GOOD
from tuf.api.metadata import TargetFile

from device_agent._durable import crash_hook
from device_agent._ratelimit import Pacer
from device_agent.config import load_config
from device_agent.download import MIN_CHECKPOINT_BYTES, download_to_slot, verify_slot
from device_agent.errors import SlotError, UpdateRefusedError
from device_agent.fetcher import AgentFetcher
from device_agent.tuf_client import TransferError
from http_support import HttpServer, serve

SIZE = 2 * 1024 * 1024 + 333
CHECKPOINT = 512 * 1024
NAME = "sigma-spectrum/1.0.0/firmware.img"


@pytest.fixture(scope="module")
def image() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def target(image: bytes) -> TargetFile:
    return TargetFile.from_data(NAME, image, ["sha256", "sha512"])


@pytest.fixture
def server(tmp_path: Path, image: bytes) -> Iterator[HttpServer]:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "fw.img").write_bytes(image)
    (tmp_path / "www" / "other.img").write_bytes(os.urandom(SIZE))
    with serve(tmp_path / "www") as s:
        yield s


class Run:
    """One download attempt's callbacks, recorded."""

    def __init__(self) -> None:
        self.checkpoints: list[int] = []
        self.progress: list[tuple[int, int]] = []

    def __call__(
        self,
        server: HttpServer,
        target: TargetFile,
        slot: Path,
        resume_from: int = 0,
        path: str = "fw.img",
        **kwargs: object,
    ) -> None:
        download_to_slot(
            AgentFetcher(chunk_size=128 * 1024),
            (f"{server.url}/{path}", target),
            slot,
            resume_from=resume_from,
            on_checkpoint=self.checkpoints.append,
            progress=lambda done, total: self.progress.append((done, total)),
            checkpoint_bytes=CHECKPOINT,
            **kwargs,  # type: ignore[arg-type]
        )


def test_streams_into_new_slot_checking_every_hash(
    server: HttpServer, target: TargetFile, image: bytes, tmp_path: Path
) -> None:
    slot = tmp_path / "slot-b"
    run = Run()
    run(server, target, slot)
    assert slot.read_bytes() == image
    assert run.checkpoints[-1] == SIZE
    assert run.checkpoints == sorted(run.checkpoints)
    gaps = [b - a for a, b in zip([0, *run.checkpoints[:-2]], run.checkpoints[:-1], strict=True)]
    assert min(gaps) >= CHECKPOINT
    assert len(run.checkpoints) <= SIZE // CHECKPOINT + 1
    assert run.progress[-1] == (SIZE, SIZE)
    verify_slot(slot, target)


def test_overwrites_longer_slot_without_truncating_first(
    server: HttpServer, target: TargetFile, image: bytes, tmp_path: Path
) -> None:
    slot = tmp_path / "slot-b"
    slot.write_bytes(b"\x00" * (SIZE + 4096))
    seen: list[tuple[str, int]] = []
    with crash_hook(lambda label: seen.append((label, slot.stat().st_size))):
        Run()(server, target, slot)
    # Until the image was verified the slot kept its size (no O_TRUNC) ...
    cut = [label for label, _ in seen].index("truncate slot")
    assert {size for _, size in seen[: cut + 1]} == {SIZE + 4096}
    # ... then it was cut to the image.
    assert slot.read_bytes() == image


@pytest.mark.parametrize("ignore_range", [False, True], ids=["range", "server-ignores-range"])
def test_resumes_interrupted_download_from_checkpoint(
    server: HttpServer, target: TargetFile, image: bytes, tmp_path: Path, ignore_range: bool
) -> None:
    slot = tmp_path / "slot-b"
    server.bad.drop_after["fw.img"] = 1_300_000
    first = Run()
    with pytest.raises(TransferError) as e:
        first(server, target, slot)
    assert e.value.reason == "network"
    assert first.checkpoints and SIZE not in first.checkpoints
    durable = first.checkpoints[-1]
    # Bytes after the checkpoint are not trusted to be durable: scribble on
    # them as a power loss might.
    with slot.open("r+b") as f:
        f.seek(durable)
        f.write(b"\xee" * 4096)

    server.bad.drop_after.clear()
    server.bad.ignore_range = ignore_range
    second = Run()
    second(server, target, slot, resume_from=durable)
    assert slot.read_bytes() == image
    assert second.checkpoints[-1] == SIZE
    assert server.log[-1].range == f"bytes={durable}-"


@pytest.mark.parametrize(
    ("dropped_at", "kept"),
    [
        (100_000, True),  # before the first byte checkpoint: kept anyway
        # After checkpoints at 512 KiB steps (the last within one 128 KiB read
        # of the step): more than MIN_CHECKPOINT_BYTES since it, kept.
        (3 * CHECKPOINT + 200_000, True),
        (50_000, False),  # less than MIN_CHECKPOINT_BYTES arrived: not worth one
    ],
)
def test_a_dropped_transfer_checkpoints_what_arrived_before_the_error(
    server: HttpServer,
    target: TargetFile,
    image: bytes,
    tmp_path: Path,
    dropped_at: int,
    kept: bool,
) -> None:
    """A network that drops often loses nothing it delivered (issue 19 finding 5)."""
    slot = tmp_path / "slot-b"
    server.bad.drop_after["fw.img"] = dropped_at
    first = Run()
    with pytest.raises(TransferError) as e:
        first(server, target, slot)
    assert e.value.reason == "network"
    # The last checkpoint is the byte the connection dropped at, or none was taken.
    assert first.checkpoints[-1:] == ([dropped_at] if kept else []), first.checkpoints
    server.bad.drop_after.clear()
    resume = first.checkpoints[-1] if first.checkpoints else 0
    second = Run()
    second(server, target, slot, resume_from=resume)
    assert slot.read_bytes() == image
    assert server.log[-1].range == (f"bytes={resume}-" if resume else None)


def test_a_slow_link_is_checkpointed_every_checkpoint_seconds(
    server: HttpServer, target: TargetFile, image: bytes, tmp_path: Path
) -> None:
    """Far from 16 MiB, a throttled download is still made durable every few seconds."""
    checkpoints: list[int] = []
    server_time: list[float] = []
    began = time.monotonic()
    download_to_slot(
        AgentFetcher(chunk_size=64 * 1024),
        (f"{server.url}/fw.img", target),
        tmp_path / "slot-b",
        on_checkpoint=checkpoints.append,
        rate_limit=lambda: 2 * 1024 * 1024,  # about 1 s for the image
        checkpoint_seconds=0.2,
        on_server_time=server_time.append,
    )
    wall = time.monotonic() - began
    assert (tmp_path / "slot-b").read_bytes() == image
    middle = checkpoints[:-1]
    assert checkpoints[-1] == SIZE
    assert len(middle) >= 3, checkpoints
    gaps = [b - a for a, b in zip([0, *middle], middle, strict=False)]
    assert min(gaps) >= MIN_CHECKPOINT_BYTES
    # The pacing is the pump's own doing, not the server's: not charged.
    assert sum(server_time) < wall / 2, (sum(server_time), wall)


def test_resume_of_complete_image_only_verifies(
    server: HttpServer, target: TargetFile, tmp_path: Path
) -> None:
    slot = tmp_path / "slot-b"
    Run()(server, target, slot)
    server.log.clear()
    run = Run()
    run(server, target, slot, resume_from=SIZE)
    assert run.checkpoints == [SIZE]
    assert server.log == []


def test_resume_over_tampered_prefix_is_refused(
    server: HttpServer, target: TargetFile, tmp_path: Path
) -> None:
    slot = tmp_path / "slot-b"
    slot.write_bytes(b"\x00" * CHECKPOINT)  # not the image's prefix
    with pytest.raises(UpdateRefusedError) as e:
        Run()(server, target, slot, resume_from=CHECKPOINT)
    assert e.value.reason == "hash-mismatch"


@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        ("substituted", "hash-mismatch"),
        ("bit-flipped", "hash-mismatch"),
        ("truncated", "length"),
        ("endless", "length"),
        ("oversized", "length"),
    ],
)
def test_rejects_corrupt_firmware(
    server: HttpServer, target: TargetFile, image: bytes, tmp_path: Path, attack: str, reason: str
) -> None:
    """The slot is never reported complete, and verify_slot refuses it."""
    if attack == "substituted":
        server.bad.substitute["fw.img"] = (server.root / "other.img").read_bytes()
    elif attack == "bit-flipped":
        server.bad.flip["fw.img"] = SIZE - 100
    elif attack == "truncated":
        server.bad.truncate["fw.img"] = SIZE - 1
    elif attack == "endless":
        server.bad.endless.add("fw.img")
    else:
        server.bad.substitute["fw.img"] = image + b"\x00"
    slot = tmp_path / "slot-b"
    run = Run()
    with pytest.raises(UpdateRefusedError) as e:
        run(server, target, slot)
    assert e.value.reason == reason
    assert SIZE not in run.checkpoints
    with pytest.raises(UpdateRefusedError):
        verify_slot(slot, target)


def test_slow_retrieval_is_a_reported_transfer_error(
    server: HttpServer, target: TargetFile, tmp_path: Path
) -> None:
    server.bad.trickle["fw.img"] = 0.05
    with pytest.raises(TransferError) as e:
        download_to_slot(
            AgentFetcher(deadline=0.3, min_rate=1e9),
            (f"{server.url}/fw.img", target),
            tmp_path / "slot-b",
            on_checkpoint=lambda n: None,
        )
    assert e.value.reason == "slow-retrieval"


def test_unknown_hash_algorithm_is_refused_before_any_byte(
    server: HttpServer, target: TargetFile, tmp_path: Path
) -> None:
    target.hashes = {"sha256": target.hashes["sha256"], "md17": "00"}
    with pytest.raises(UpdateRefusedError) as e:
        Run()(server, target, tmp_path / "slot-b")
    assert e.value.reason == "hash-algorithm"
    assert not (tmp_path / "slot-b").exists()
    assert server.log == []


def test_verify_slot_detects_a_flipped_bit(
    server: HttpServer, target: TargetFile, tmp_path: Path
) -> None:
    slot = tmp_path / "slot-b"
    Run()(server, target, slot)
    with slot.open("r+b") as f:
        f.seek(12345)
        byte = f.read(1)
        f.seek(12345)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(UpdateRefusedError) as e:
        verify_slot(slot, target)
    assert e.value.reason == "hash-mismatch"


def test_crash_points_stay_few_per_download(
    server: HttpServer, target: TargetFile, tmp_path: Path
) -> None:
    labels: list[str] = []
    with crash_hook(labels.append):
        Run()(server, target, tmp_path / "slot-b")
    fsyncs = [label for label in labels if label.startswith("fsync")]
    assert set(fsyncs) == {"fsync slot", "fsync-dir slot"}
    assert labels.count("fsync-dir slot") == 1  # the new slot file's entry
    assert len(fsyncs) <= SIZE // CHECKPOINT + 2
    assert labels.count("truncate slot") == 1
    assert set(labels) == {"write slot", "fsync slot", "fsync-dir slot", "truncate slot"}


def test_a_new_slot_file_is_created_durably(
    server: HttpServer, target: TargetFile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slots = tmp_path / "slots"
    slots.mkdir()
    synced: list[tuple[int, int]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        synced.append((st.st_dev, st.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    labels: list[str] = []
    with crash_hook(labels.append):
        Run()(server, target, slots / "slot-b")
    directory = (slots.stat().st_dev, slots.stat().st_ino)
    # Its directory entry is durable before any byte is written into it.
    assert synced.count(directory) == 1
    assert labels.index("fsync-dir slot") < labels.index("write slot")
    # An existing slot (file or block device) has no new entry to sync.
    synced.clear()
    Run()(server, target, slots / "slot-b")
    assert directory not in synced


def test_rate_limit_is_polled_per_chunk(
    server: HttpServer, target: TargetFile, tmp_path: Path
) -> None:
    polls: list[None] = []

    def limit() -> float | None:
        polls.append(None)
        return None

    Run()(server, target, tmp_path / "slot-b", rate_limit=limit)
    assert len(polls) >= SIZE // (128 * 1024)


def test_pacer_follows_a_changing_limit() -> None:
    now = [0.0]
    slept: list[float] = []
    rates: list[float | None] = [1000.0, 1000.0, None, 2000.0]

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    pacer = Pacer(lambda: rates.pop(0), sleep=sleep, clock=lambda: now[0])
    pacer.account(500)  # 0.5 s worth at 1000 B/s
    pacer.account(500)
    pacer.account(10_000)  # unlimited: no sleep
    pacer.account(1000)  # new limit starts afresh
    assert slept == pytest.approx([0.5, 0.5, 0.5])


# ----------------------------------------------------- malformed and short
def _answer(head: bytes, body: bytes) -> Callable[[Callable[[bytes], None], object], None]:
    """A raw response script for ``HttpServer.bad.raw``."""

    def script(send: Callable[[bytes], None], stopping: object) -> None:
        send(head + body)

    return script


@pytest.mark.parametrize(
    "value",
    [b"\xb9\xb2", b"12abc", b"-12", b"+12", b"0x0c", b"12, 12", b"", b"1" * 30],
    ids=["superscript-digits", "trailing-junk", "negative", "plus-sign", "hex", "list", "empty",
         "30-digits"],
)  # fmt: skip
def test_a_malformed_content_length_is_a_transfer_error_not_a_crash(
    server: HttpServer, tmp_path: Path, value: bytes
) -> None:
    """'\\xb9\\xb2'.isdigit() is True and int() refuses it: no ValueError may reach the agent."""
    body = b"x" * 12
    head = b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\nConnection: close\r\n\r\n"
    server.bad.raw["fw.img"] = _answer(head, body)
    target = TargetFile.from_data(NAME, body, ["sha256"])
    with pytest.raises(TransferError) as e:
        Run()(server, target, tmp_path / "slot-b")
    assert e.value.reason == "network"
    assert "Content-Length" in str(e.value)


def _prefix(slot: Path, image: bytes, n: int) -> int:
    slot.write_bytes(image[:n])
    return n


SHORT = ["dropped-without-content-length", "206-shorter-than-asked", "200-shorter-than-resume"]


@pytest.mark.parametrize("case", SHORT)
def test_a_transfer_cut_short_is_retried_and_resumed_not_refused(
    server: HttpServer, target: TargetFile, image: bytes, tmp_path: Path, case: str
) -> None:
    slot = tmp_path / "slot-b"
    resume = 0
    if case == "dropped-without-content-length":
        head = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
        server.bad.raw["fw.img"] = _answer(head, image[: SIZE // 2])
    elif case == "206-shorter-than-asked":
        resume = _prefix(slot, image, CHECKPOINT)
        last = CHECKPOINT + 9999
        head = (
            f"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {CHECKPOINT}-{last}/{SIZE}"
            "\r\nContent-Length: 10000\r\n\r\n"
        ).encode()
        server.bad.raw["fw.img"] = _answer(head, image[CHECKPOINT : last + 1])
    else:
        # The server ignores Range and its 200 ends before the resume offset.
        resume = _prefix(slot, image, CHECKPOINT)
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
        server.bad.raw["fw.img"] = _answer(head, image[:10])
    run = Run()
    with pytest.raises(TransferError) as e:
        run(server, target, slot, resume_from=resume)
    assert e.value.reason == "network"
    assert SIZE not in run.checkpoints
    # Retried later, the download resumes from its last checkpoint and completes.
    server.bad.raw.clear()
    again = Run()
    again(server, target, slot, resume_from=max([resume, *run.checkpoints]))
    assert again.checkpoints[-1] == SIZE
    verify_slot(slot, target)


# ----------------------------------------------------- slot swapped later
@pytest.mark.parametrize(
    ("victim", "existing"),
    [
        ("slots/a.img", True),
        ("state/bootenv", True),
        ("device.key", True),
        ("state/bootenv", False),
    ],
    ids=["the-running-slot", "the-boot-env", "the-device-key", "a-boot-env-not-yet-written"],
)
def test_a_slot_swapped_for_another_configured_file_after_loading_is_never_written(
    server: HttpServer, target: TargetFile, tmp_path: Path, victim: str, existing: bool
) -> None:
    (tmp_path / "slots").mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "slots" / "a.img").write_bytes(b"factory image")
    (tmp_path / "agent.toml").write_text(GOOD)
    config = load_config(tmp_path / "agent.toml")
    protected = tmp_path / victim
    if existing and not protected.exists():
        protected.write_bytes(b"precious")
    before = protected.read_bytes() if existing else None
    # After loading: slot b becomes a link to another configured file.
    config.slots["b"].symlink_to(protected)
    with pytest.raises(SlotError, match="refusing to write it"):
        Run()(server, target, config.slots["b"])
    if existing:
        assert protected.read_bytes() == before
    else:
        assert not protected.exists()


# ----------------------------------------------------- rate limit slices
@pytest.mark.parametrize(
    ("rates", "slept"),
    [
        # Throttled to 1 KiB/s, the infusion ends after 3 s: the pause ends then.
        ([1024.0, 1024.0, 1024.0, None], [1.0, 1.0, 1.0]),
        # A higher limit arrives: the pause ends, the new limit starts afresh.
        ([1024.0, 1024.0, 4096.0], [1.0, 1.0]),
        # The limit stays: the whole pause, in one-second slices.
        ([1024.0] * 8, [1.0] * 5),
    ],
    ids=["limit-lifted", "limit-raised", "limit-kept"],
)
def test_a_long_rate_limit_pause_rereads_the_limit_every_second(
    rates: list[float | None], slept: list[float]
) -> None:
    now = [0.0]
    sleeps: list[float] = []
    polls = iter(rates)

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    pacer = Pacer(lambda: next(polls), sleep=sleep, clock=lambda: now[0])
    pacer.account(5 * 1024)  # one chunk worth 5 s at 1 KiB/s
    assert sleeps == pytest.approx(slept)
