"""Constants and helpers shared by the sbom tests (imported by name)."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

FIRMWARE_SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
TIMESTAMP = datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.UTC)
SERIAL = uuid.UUID("3e671687-395b-41f5-a30f-a58921a69b79")

MANIFEST = """
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


def properties(component: dict[str, Any], name: str) -> list[str]:
    """Values of the properties called ``name`` of a CycloneDX component."""
    return [p["value"] for p in component.get("properties", []) if p["name"] == name]


def component_named(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """The component called ``name`` of an SBOM."""
    (found,) = [c for c in doc.get("components", []) if c["name"] == name]
    return found


def depends_on(doc: dict[str, Any], ref: str) -> set[str]:
    """The bom-refs ``ref`` depends on, per the SBOM's dependency graph."""
    (entry,) = [d for d in doc["dependencies"] if d["ref"] == ref]
    return set(entry.get("dependsOn", []))
