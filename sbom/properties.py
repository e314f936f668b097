"""Names of the CycloneDX properties pumpguard writes into an SBOM.

Properties are CycloneDX's extension point: name/value pairs on a component.
Names under ``cdx:`` come from the official CycloneDX property taxonomy; names
under ``pumpguard:`` are this project's own (docs/sbom-manifest.md).
"""

from __future__ import annotations

__all__ = [
    "END_OF_SUPPORT",
    "FIRMWARE_NAME",
    "FIRMWARE_SIZE",
    "HARDWARE_ID",
    "SUPPORT_LEVEL",
    "SUPPORT_LEVELS",
    "UNKNOWN",
]

#: Size of the firmware image in bytes (decimal), on the firmware component.
FIRMWARE_SIZE = "pumpguard:firmware:size"
#: File name of the firmware image, on the firmware component.
FIRMWARE_NAME = "pumpguard:firmware:name"
#: One per pump hardware revision the firmware may run on, on the firmware component.
HARDWARE_ID = "pumpguard:hardware-id"
#: Level of support the component's supplier gives, on every manifest component.
SUPPORT_LEVEL = "pumpguard:support-level"
#: End-of-support date (ISO 8601, YYYY-MM-DD) or ``unknown``, on every manifest
#: component. The name is the CycloneDX taxonomy's lifecycle milestone.
END_OF_SUPPORT = "cdx:lifecycle:milestone:endOfSupport"

#: The value recorded when a fact is not known; pumpguard never invents one.
UNKNOWN = "unknown"
#: The values ``support_level`` may take in a component manifest.
SUPPORT_LEVELS = ("supported", "limited", "unsupported", UNKNOWN)
