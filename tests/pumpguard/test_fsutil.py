"""Crash-safe writes (pumpguard.fsutil)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pumpguard.fsutil import FileTooLargeError, atomic_write_bytes, read_capped, write_immutable


def test_atomic_write_replaces_whole_file_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert os.stat(target).st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_atomic_write_failure_keeps_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f.json"
    atomic_write_bytes(target, b"old")

    def boom(fd: int) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_write_immutable_is_idempotent_but_refuses_other_content(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "1.root.json"
    write_immutable(target, b"v1")
    write_immutable(target, b"v1")
    with pytest.raises(FileExistsError):
        write_immutable(target, b"changed")
    assert target.read_bytes() == b"v1"


def test_capped_reader_accepts_a_file_of_exactly_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_bytes(b"x" * 64)
    assert read_capped(path, 64) == b"x" * 64


def test_capped_reader_refuses_one_byte_more_naming_the_file_and_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_bytes(b"x" * 65)
    with pytest.raises(
        FileTooLargeError, match=rf"^{re.escape(str(path))} is larger than 64 bytes$"
    ):
        read_capped(path, 64)
    with pytest.raises(FileTooLargeError, match=r"^VEX file a\.json is larger than 64 bytes$"):
        read_capped(path, 64, "VEX file a.json")


def test_capped_reader_reads_at_most_limit_plus_one_of_an_endless_file() -> None:
    """/dev/zero never ends: the reader stops one byte past its limit."""
    with pytest.raises(FileTooLargeError) as refused:
        read_capped(Path("/dev/zero"), 1 << 20)
    assert refused.value.limit == 1 << 20


def test_capped_reader_passes_os_errors_through(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_capped(tmp_path / "missing", 64)
