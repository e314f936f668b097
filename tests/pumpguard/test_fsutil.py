"""Crash-safe writes (pumpguard.fsutil)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pumpguard.fsutil import atomic_write_bytes, write_immutable


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
