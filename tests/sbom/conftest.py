"""Shared fixtures of the sbom tests."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sbom_helpers import FIRMWARE_SHA256, SERIAL, TIMESTAMP

from sbom import build_firmware_sbom


@pytest.fixture
def write_manifest(tmp_path: Path) -> Callable[[str], Path]:
    """Write TOML text (dedented) to a manifest file and return its path."""

    def write(text: str) -> Path:
        path = tmp_path / "components.toml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def build() -> Callable[..., dict[str, Any]]:
    """Build an SBOM with sensible defaults, overridable, and return it parsed."""

    def _build(**overrides: Any) -> dict[str, Any]:
        args: dict[str, Any] = {
            "product": "sigma-spectrum",
            "version": "8.1.0",
            "firmware_name": "firmware.img",
            "firmware_sha256": FIRMWARE_SHA256,
            "firmware_size": 4096,
            "hardware_ids": ("rev-c", "rev-d"),
            "timestamp": TIMESTAMP,
            "serial_number": SERIAL,
        }
        args.update(overrides)
        doc: dict[str, Any] = json.loads(build_firmware_sbom(**args))
        return doc

    return _build
