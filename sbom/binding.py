"""The binding between an SBOM and its firmware image (DESIGN.md, Release contract).

The SBOM's firmware component (``metadata.component``) carries the firmware's
sha256, the same one the TUF target of the firmware carries. Reading it needs no
schema, only careful JSON parsing, so the check is cheap and safe on any input.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from pumpguard.release import ReleaseInfo
from sbom._json import load_strict
from sbom.errors import SbomValidationError, SbomVerificationError

__all__ = ["bound_firmware_sha256", "check_release_binding"]

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def _field(obj: dict[str, Any], key: str, kind: type, path: str) -> Any:
    if key not in obj:
        raise SbomValidationError(f"SBOM is not bound to a firmware: {path}.{key} is missing")
    value = obj[key]
    if not isinstance(value, kind):
        raise SbomValidationError(
            f"SBOM is not bound to a firmware: {path}.{key} must be a JSON "
            f"{'object' if kind is dict else 'array' if kind is list else 'string'}"
        )
    return value


def bound_firmware_sha256(sbom_json: bytes) -> str:
    """Return the sha256 of the firmware an SBOM describes.

    The firmware is the SBOM's ``metadata.component``. It must be of type
    ``firmware`` and carry exactly one SHA-256 hash, in lower-case hex. The
    document is not checked against the CycloneDX schema (see
    :func:`sbom.validate_sbom`); this is pure, strict JSON parsing.

    Args:
        sbom_json: The CycloneDX JSON document.

    Returns:
        The 64 lower-case hex digits of the firmware's SHA-256 hash.

    Raises:
        SbomValidationError: The document is not JSON, not a CycloneDX object,
            or its firmware component or hash is missing or malformed; the
            message names what.
    """
    doc = load_strict(sbom_json)
    if not isinstance(doc, dict):
        raise SbomValidationError("SBOM is not a JSON object")
    if doc.get("bomFormat") != "CycloneDX":
        raise SbomValidationError('SBOM is not CycloneDX: bomFormat is not "CycloneDX"')
    metadata = _field(doc, "metadata", dict, "$")
    component = _field(metadata, "component", dict, "$.metadata")
    kind = _field(component, "type", str, "$.metadata.component")
    if kind != "firmware":
        raise SbomValidationError(
            f"SBOM is not bound to a firmware: $.metadata.component.type is {kind!r}, "
            "not 'firmware'"
        )
    hashes = _field(component, "hashes", list, "$.metadata.component")
    if not all(isinstance(h, dict) for h in hashes):
        raise SbomValidationError(
            "SBOM is not bound to a firmware: $.metadata.component.hashes has a non-object entry"
        )
    sha256 = [h for h in hashes if h.get("alg") == "SHA-256"]
    if len(sha256) != 1:
        raise SbomValidationError(
            "SBOM is not bound to a firmware: $.metadata.component.hashes has "
            f"{len(sha256)} SHA-256 hashes, exactly one is required"
        )
    content = sha256[0].get("content")
    if not isinstance(content, str) or not _SHA256_RE.fullmatch(content):
        raise SbomValidationError(
            "SBOM is not bound to a firmware: the firmware's SHA-256 hash content "
            "is not 64 lower-case hex digits"
        )
    return content


def check_release_binding(release: ReleaseInfo, firmware_sha256: str, sbom_json: bytes) -> None:
    """Check that an SBOM belongs to a published release and describes its firmware.

    Both the SBOM and the firmware target's facts must already have been
    verified by TUF; this only compares them.

    Args:
        release: The firmware target's release contract (its ``custom`` field).
        firmware_sha256: The sha256 the firmware target's TUF metadata gives.
        sbom_json: The SBOM target's content.

    Raises:
        SbomVerificationError: The SBOM is not the one the release names, or
            its firmware hash is not the published firmware's; the message
            gives both hashes.
    """
    actual = hashlib.sha256(sbom_json).hexdigest()
    if actual != release.sbom_sha256:
        raise SbomVerificationError(
            f"the SBOM of {release.product}/{release.version} has sha256 {actual}, but the "
            f"release names {release.sbom_sha256}"
        )
    try:
        bound = bound_firmware_sha256(sbom_json)
    except SbomValidationError as e:
        raise SbomVerificationError(f"{release.sbom_path}: {e}") from e
    if bound != firmware_sha256:
        raise SbomVerificationError(
            f"{release.sbom_path} describes firmware sha256 {bound}, but the published "
            f"{release.firmware_path} has sha256 {firmware_sha256}"
        )
