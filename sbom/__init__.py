"""CycloneDX SBOMs of pumpguard firmware releases.

Generates the CycloneDX 1.6 JSON SBOM published next to every firmware image
(DESIGN.md, Release contract), validates SBOMs against the strict schema, and
reads the firmware sha256 that binds an SBOM to its image.

The reviewer's tools live in their own modules, imported when needed:
:mod:`sbom.check` (NTIA and FDA checks), :mod:`sbom.vulndb` (the offline
advisory store, fed by :mod:`sbom.feeds`), :mod:`sbom.audit` (matching),
:mod:`sbom.vex` (analyses), :mod:`sbom.diff`, :mod:`sbom.report_html` and
:mod:`sbom.verify` (the SBOM fetched through TUF). Component inputs other than
the TOML manifest: :mod:`sbom.yocto`, :mod:`sbom.dpkg`, :mod:`sbom.merge`.
The names below, too, are imported on first use (:mod:`pumpguard.lazy`).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sbom.binding import bound_firmware_sha256
    from sbom.errors import ComponentManifestError, SbomError, SbomValidationError
    from sbom.generate import build_firmware_sbom, firmware_bom_ref
    from sbom.manifest import (
        ComponentManifest,
        ComponentSpec,
        OrganizationSpec,
        load_component_manifest,
        load_manifest,
    )
    from sbom.validation import validate_sbom
else:
    from pumpguard.lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "bound_firmware_sha256": "sbom.binding",
            "ComponentManifestError": "sbom.errors",
            "SbomError": "sbom.errors",
            "SbomValidationError": "sbom.errors",
            "build_firmware_sbom": "sbom.generate",
            "firmware_bom_ref": "sbom.generate",
            "ComponentManifest": "sbom.manifest",
            "ComponentSpec": "sbom.manifest",
            "OrganizationSpec": "sbom.manifest",
            "load_component_manifest": "sbom.manifest",
            "load_manifest": "sbom.manifest",
            "validate_sbom": "sbom.validation",
        },
    )

__all__ = [
    "ComponentManifest",
    "ComponentManifestError",
    "ComponentSpec",
    "OrganizationSpec",
    "SbomError",
    "SbomValidationError",
    "bound_firmware_sha256",
    "build_firmware_sbom",
    "firmware_bom_ref",
    "load_component_manifest",
    "load_manifest",
    "validate_sbom",
]
