"""Errors of the ``sbom`` package.

Every error the package raises on purpose derives from :class:`SbomError`, itself
a :class:`pumpguard.errors.PumpguardError`, so the umbrella CLI prints it as one
line and exits with its exit code.
"""

from __future__ import annotations

from pumpguard.errors import PumpguardError

__all__ = [
    "ComponentManifestError",
    "FeedError",
    "SbomError",
    "SbomInputError",
    "SbomPolicyError",
    "SbomValidationError",
    "SbomVerificationError",
    "VexError",
    "VulnDbError",
]


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


class SbomInputError(SbomError):
    """A component input other than the TOML manifest is unreadable or invalid.

    Yocto image manifests, dpkg status files and CycloneDX SBOMs to merge. The
    message names the file and, where it can, the line or component.
    """

    exit_code = 2


class FeedError(SbomError):
    """A vulnerability feed (OSV, NVD, CISA KEV) cannot be imported.

    The message names the file (and the zip member or record) and what is wrong
    with it. The store is left as it was before the import.
    """

    exit_code = 2


class VulnDbError(SbomError):
    """The offline vulnerability store is missing, unreadable or not a store."""

    exit_code = 1


class VexError(SbomError):
    """A VEX analysis or document is invalid, or refers to an unknown component."""

    exit_code = 2


class SbomVerificationError(SbomError):
    """An SBOM fetched through TUF does not verify against the published release.

    Raised when TUF refuses the repository's metadata or targets, or when the
    SBOM's firmware sha256 differs from the published firmware target's.
    """

    exit_code = 4


class SbomPolicyError(SbomError):
    """An SBOM failed the chosen policy (``sbom check``, ``sbom audit --fail-on``).

    Exit code 5 tells a pipeline "the document was read and judged, and the
    judgement is no", as opposed to 1 (the tool could not do its work) and 4
    (the document is not valid CycloneDX or does not verify).
    """

    exit_code = 5
