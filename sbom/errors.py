"""Errors of the ``sbom`` package.

Every error the package raises on purpose derives from :class:`SbomError`, itself
a :class:`pumpguard.errors.PumpguardError`, so the umbrella CLI prints it as one
line and exits with its exit code.
"""

from __future__ import annotations

from pumpguard.errors import PumpguardError

__all__ = ["ComponentManifestError", "SbomError", "SbomValidationError"]


class SbomError(PumpguardError):
    """Base of every error the ``sbom`` package raises on purpose."""

    exit_code = 1


class ComponentManifestError(SbomError):
    """A TOML component manifest is unreadable or invalid.

    The message names the manifest file, the component (its position in the
    manifest and its name, when known) and the offending field.
    """

    exit_code = 2


class SbomValidationError(SbomError):
    """An SBOM is not valid CycloneDX 1.6 JSON or is not bound to a firmware.

    Raised for documents that fail the strict CycloneDX 1.6 JSON schema and for
    documents whose firmware component lacks the single SHA-256 hash that binds
    the SBOM to its firmware image (DESIGN.md, Release contract).
    """

    exit_code = 4
