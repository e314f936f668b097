"""Fixtures shared by the sbom tests."""

from __future__ import annotations

import datetime
import json
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sbom import build_firmware_sbom

#: sha256 of the firmware the fixtures describe (that of b"test").
FIRMWARE_SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

#: A manifest using most fields: a dependency, an expression, unknowns.
EXAMPLE_MANIFEST = """
[supplier]
name = "Acme Medical Devices"
url = "https://acme-medical.example"

[[component]]
name = "zephyr"
version = "3.7.0"
type = "operating-system"
supplier = "Zephyr Project"
purl = "pkg:github/zephyrproject-rtos/zephyr@v3.7.0"
cpe = "cpe:2.3:o:zephyrproject:zephyr:3.7.0:*:*:*:*:*:*:*"
licenses = ["Apache-2.0"]
support_level = "supported"
end_of_support = 2029-07-31
depends_on = ["mbedtls"]

[[component]]
name = "mbedtls"
version = "3.6.2"
licenses = ["Apache-2.0 OR GPL-2.0-or-later"]
hashes = { sha256 = "8B54FB9BCF4D5A7078028E0520ACDDEFB7900B3E66FEC7F7175BB5B7D85CCDCA" }

[[component]]
name = "infusion-control"
version = "8.1.0"
type = "application"
licenses = ["LicenseRef-acme-proprietary"]
support_level = "limited"
end_of_support = "unknown"
"""


@pytest.fixture
def firmware_sha256() -> str:
    """The firmware sha256 :func:`make_sbom` uses unless told otherwise."""
    return FIRMWARE_SHA256


@pytest.fixture
def write_manifest(tmp_path: Path) -> Callable[[str], Path]:
    """Write TOML text (dedented) to a manifest file and return its path."""

    def write(text: str) -> Path:
        path = tmp_path / "components.toml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def example_manifest(write_manifest: Callable[[str], Path]) -> Path:
    """Path of :data:`EXAMPLE_MANIFEST` written to a file."""
    return write_manifest(EXAMPLE_MANIFEST)


@pytest.fixture
def make_sbom() -> Callable[..., bytes]:
    """Build an SBOM of sigma-spectrum 8.1.0 with fixed time and serial.

    Keyword arguments override those of :func:`sbom.build_firmware_sbom`.
    """

    def make(**overrides: Any) -> bytes:
        args: dict[str, Any] = {
            "product": "sigma-spectrum",
            "version": "8.1.0",
            "firmware_name": "firmware.img",
            "firmware_sha256": FIRMWARE_SHA256,
            "firmware_size": 4096,
            "hardware_ids": ("rev-c", "rev-d"),
            "timestamp": datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.UTC),
            "serial_number": uuid.UUID("3e671687-395b-41f5-a30f-a58921a69b79"),
        }
        args.update(overrides)
        return build_firmware_sbom(**args)

    return make


@pytest.fixture
def build(make_sbom: Callable[..., bytes]) -> Callable[..., dict[str, Any]]:
    """Like :func:`make_sbom`, but return the SBOM parsed."""

    def parsed(**overrides: Any) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(make_sbom(**overrides))
        return doc

    return parsed


#: Real advisories written as fixtures (OSV folder, NVD CVE JSON 2.0, CISA KEV).
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def vulndb_path(tmp_path: Path) -> Path:
    """A store holding every fixture feed: OSV folder, NVD feed, KEV catalog."""
    from sbom.feeds import read_feed
    from sbom.vulndb import VulnDb

    path = tmp_path / "vulndb.sqlite"
    with VulnDb.open(path, create=True) as db:
        for feed in ("osv", "nvdcve-2.0-sample.json", "known_exploited_vulnerabilities.json"):
            db.import_feed(read_feed(FIXTURES / feed))
    return path
