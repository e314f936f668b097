"""Directories the agent creates survive a power loss: their parents are fsynced."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from agent_support import World
from device_agent._durable import crash_hook, make_dirs_durable
from device_agent.agent import Agent
from device_agent.reporting import Outbox


class FsyncRecorder:
    """Records the (device, inode) of everything ``os.fsync`` is called on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.synced: list[tuple[int, int]] = []
        real = os.fsync

        def fsync(fd: int) -> None:
            st = os.fstat(fd)
            self.synced.append((st.st_dev, st.st_ino))
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)

    def count(self, path: Path) -> int:
        """How often ``path`` was fsynced."""
        st = path.stat()
        return self.synced.count((st.st_dev, st.st_ino))


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> FsyncRecorder:
    return FsyncRecorder(monkeypatch)


def test_make_dirs_durable_fsyncs_the_parent_of_every_new_directory(
    tmp_path: Path, fsyncs: FsyncRecorder
) -> None:
    leaf = tmp_path / "a" / "b" / "c"
    labels: list[str] = []
    with crash_hook(labels.append):
        created = make_dirs_durable(leaf, "test")
    assert created == [tmp_path / "a", tmp_path / "a" / "b", leaf]
    assert leaf.is_dir()
    for parent in (tmp_path, tmp_path / "a", tmp_path / "a" / "b"):
        assert fsyncs.count(parent) == 1, parent
    assert fsyncs.count(leaf) == 0  # empty: whatever goes in fsyncs it
    assert labels == ["mkdir test", "fsync-dir test"] * 3


def test_make_dirs_durable_is_idempotent(tmp_path: Path, fsyncs: FsyncRecorder) -> None:
    make_dirs_durable(tmp_path / "a" / "b", "test")
    (tmp_path / "a" / "b" / "keep").write_bytes(b"x")
    fsyncs.synced.clear()
    assert make_dirs_durable(tmp_path / "a" / "b", "test") == []
    assert make_dirs_durable(tmp_path / "a", "test") == []
    assert fsyncs.synced == []  # nothing new, nothing to make durable
    assert (tmp_path / "a" / "b" / "keep").read_bytes() == b"x"
    # A missing leaf below existing directories: only its own parent.
    assert make_dirs_durable(tmp_path / "a" / "b" / "c", "test") == [tmp_path / "a" / "b" / "c"]
    assert fsyncs.count(tmp_path / "a" / "b") == 1
    assert len(fsyncs.synced) == 1


def test_make_dirs_durable_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(FileExistsError):
        make_dirs_durable(tmp_path / "file", "test")
    with pytest.raises(FileExistsError):
        make_dirs_durable(tmp_path / "file" / "sub", "test")


def test_agent_creates_its_state_and_metadata_directories_durably(
    world: World, tmp_path: Path, fsyncs: FsyncRecorder
) -> None:
    config = world.new_pump(tmp_path / "pump", "pump-0001").config()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    config = replace(config, state_dir=fresh / "var" / "state", metadata_dir=fresh / "var" / "tuf")
    fsyncs.synced.clear()
    Agent(config)
    assert config.state_dir.is_dir() and config.metadata_dir.is_dir()
    assert fsyncs.count(fresh) == 1  # var
    assert fsyncs.count(fresh / "var") == 2  # state, tuf


def test_outbox_directory_is_created_durably(tmp_path: Path, fsyncs: FsyncRecorder) -> None:
    state = tmp_path / "state"
    state.mkdir()
    Outbox(state).append("check", {})
    assert fsyncs.count(state) == 1  # the outbox's entry
    assert fsyncs.count(state / "outbox") == 1  # the event's (atomic_write)
    fsyncs.synced.clear()
    Outbox(state).append("check", {})
    assert fsyncs.count(state) == 0
