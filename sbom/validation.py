"""Strict CycloneDX 1.6 JSON schema validation."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from sbom._json import load_strict
from sbom.errors import SbomValidationError

if TYPE_CHECKING:
    from cyclonedx.validation.json import JsonStrictValidator

__all__ = ["validate_sbom"]

#: How many schema errors an :class:`SbomValidationError` message lists at most.
_MAX_REPORTED = 3


@functools.cache
def _validator() -> JsonStrictValidator:
    # jsonschema takes about a second to import; only pay for it when validating.
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    return JsonStrictValidator(SchemaVersion.V1_6)


def _describe(error: Any) -> str:
    data = error.data
    path = getattr(data, "json_path", "$")
    message = getattr(data, "message", str(data))
    if len(message) > 300:
        message = message[:300] + "..."
    return f"at {path}: {message}"


def validate_sbom(sbom_json: bytes) -> None:
    """Check an SBOM against the strict CycloneDX 1.6 JSON schema.

    The strict schema refuses properties the specification does not define. The
    document must also be strict JSON (no duplicate keys, no ``NaN``).

    Args:
        sbom_json: The CycloneDX JSON document.

    Raises:
        SbomValidationError: The document is not JSON, or is not valid
            CycloneDX 1.6; the message lists the first schema errors.
    """
    doc = load_strict(sbom_json)
    if not isinstance(doc, dict):
        raise SbomValidationError("SBOM is not a JSON object")
    if doc.get("specVersion") != "1.6":
        raise SbomValidationError(
            f"SBOM specVersion is {doc.get('specVersion')!r}, pumpguard requires '1.6'"
        )
    errors = _validator().validate_str(json.dumps(doc), all_errors=True)
    if errors is None:
        return
    reported: list[str] = []
    more = False
    for error in errors:
        if len(reported) == _MAX_REPORTED:
            more = True
            break
        reported.append(_describe(error))
    suffix = "; and more" if more else ""
    raise SbomValidationError("SBOM is not valid CycloneDX 1.6: " + "; ".join(reported) + suffix)
