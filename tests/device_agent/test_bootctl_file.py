"""The file backend's on-disk format: two checksummed, sequence-numbered copies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bootctl_support import SLOTS
from device_agent.bootctl import BootEnv, FileBootControl
from device_agent.bootctl.file import COPY_SIZE, decode_copy, encode_copy
from device_agent.errors import BootControlError


def _copies(path: Path) -> list[tuple[int, dict[str, object]] | None]:
    data = path.read_bytes()
    result: list[tuple[int, dict[str, object]] | None] = []
    for i in range(2):
        decoded = decode_copy(data[i * COPY_SIZE : (i + 1) * COPY_SIZE])
        result.append(None if decoded is None else (decoded[0], json.loads(decoded[1])))
    return result


@pytest.fixture
def boot(tmp_path: Path) -> FileBootControl:
    b = FileBootControl(tmp_path / "bootenv", SLOTS)
    b.initialize("a")
    return b


def test_initialize_writes_two_valid_copies(boot: FileBootControl) -> None:
    assert boot.path.stat().st_size == 2 * COPY_SIZE
    payload = {"attempts_left": 0, "committed": "a", "trial": None}
    assert _copies(boot.path) == [(1, payload), (0, payload)]


def test_updates_alternate_copies_with_increasing_sequence_numbers(
    boot: FileBootControl,
) -> None:
    boot.start_trial("b", 3)
    assert [c and c[0] for c in _copies(boot.path)] == [1, 2]
    boot.boot()
    assert [c and c[0] for c in _copies(boot.path)] == [3, 2]
    boot.commit("b")
    copies = _copies(boot.path)
    assert copies[1] == (4, {"attempts_left": 0, "committed": "b", "trial": None})
    # the other copy still holds the previous env, ready for a fallback
    assert copies[0] == (3, {"attempts_left": 2, "committed": "a", "trial": "b"})


def test_a_file_of_the_wrong_size_is_an_error(boot: FileBootControl) -> None:
    with boot.path.open("ab") as f:
        f.write(b"\0")
    with pytest.raises(BootControlError, match=f"is {2 * COPY_SIZE + 1} bytes"):
        boot.read()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"committed": "a", "trial": null}', r"missing keys \['attempts_left'\]"),
        (
            b'{"committed": "a", "trial": null, "attempts_left": 0, "x": 1}',
            r"unknown keys \['x'\]",
        ),
        (b'{"committed": "a", "trial": "b", "attempts_left": true}', "attempts_left=True"),
        (b'{"committed": "a", "trial": "b", "attempts_left": "2"}', "attempts_left='2'"),
        (b'{"committed": 1, "trial": null, "attempts_left": 0}', "committed=1"),
    ],
)
def test_a_checksummed_but_invalid_newest_copy_is_an_error_not_a_fallback(
    boot: FileBootControl, payload: bytes, message: str
) -> None:
    # A valid checksum means the copy was written that way on purpose (or by a
    # bug); falling back to the older copy would silently undo an update.
    with boot.path.open("r+b") as f:
        f.write(encode_copy(7, payload))
    with pytest.raises(BootControlError, match=message):
        boot.read()


def test_decode_copy_rejects_a_wrong_magic_length_or_digest() -> None:
    good = encode_copy(5, b"{}")
    assert decode_copy(good) == (5, b"{}")
    assert decode_copy(b"X" + good[1:]) is None  # magic
    assert decode_copy(good[:8] + b"\6" + good[9:]) is None  # seq is covered by the digest
    assert decode_copy(good[:-1]) is None  # short
    too_long = good[:16] + (COPY_SIZE).to_bytes(4, "little") + good[20:]
    assert decode_copy(too_long) is None


def test_a_payload_that_does_not_fit_is_refused() -> None:
    with pytest.raises(BootControlError, match="exceeds"):
        encode_copy(1, b"x" * COPY_SIZE)


def test_a_missing_parent_directory_is_a_boot_control_error(tmp_path: Path) -> None:
    boot = FileBootControl(tmp_path / "no" / "such" / "bootenv", SLOTS)
    with pytest.raises(BootControlError, match="cannot create"):
        boot.initialize("a")


def test_the_env_survives_a_new_backend_object(boot: FileBootControl) -> None:
    boot.start_trial("b", 2)
    assert FileBootControl(boot.path, ["a", "b"]).read() == BootEnv("a", "b", 2)
