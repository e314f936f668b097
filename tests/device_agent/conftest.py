"""Fixtures of the agent tests: a whole update system on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_support import World, world_at


@pytest.fixture
def world(key_dir: Path, tmp_path: Path) -> Iterator[World]:
    """Repository, update server on loopback (SQLite), release 1.0.0 as factory image."""
    with world_at(tmp_path / "world", key_dir) as w:
        yield w
