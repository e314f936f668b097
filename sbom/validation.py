"""Strict CycloneDX 1.6 JSON schema validation."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

from sbom._json import load_strict
from sbom.errors import SbomValidationError

__all__ = ["validate_sbom"]

#: How many schema errors an :class:`SbomValidationError` message lists at most.
_MAX_REPORTED = 3


def _canonical(value: Any) -> Any:
    # JSON Schema equality: 1 and 1.0 are equal, true and 1 are not.
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """``uniqueItems`` in linear time.

    jsonschema compares every pair of objects (they cannot be sorted), which
    takes seconds for the components of a firmware with a few thousand
    packages; a canonical serialisation of each item gives the same answer
    with one pass.
    """
    from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]

    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[str] = set()
    for item in instance:
        key = json.dumps(_canonical(item), sort_keys=True, separators=(",", ":"))
        if key in seen:
            yield ValidationError(f"{item!r} is repeated; the items must be unique")
            return
        seen.add(key)


@functools.cache
def _validator() -> Any:
    # jsonschema takes about a second to import; only pay for it when validating.
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    from jsonschema.validators import extend  # type: ignore[import-untyped]

    # The library's validator, with its schema and the registry of the schemas
    # it refers to (SPDX ids, JSF, cryptography definitions) ...
    base = JsonStrictValidator(SchemaVersion.V1_6)._validator
    # ... with the linear uniqueItems.
    fast = extend(type(base), validators={"uniqueItems": _unique_items})
    return fast(base.schema, registry=base._registry, format_checker=base.format_checker)


def _describe(error: Any) -> str:
    path = getattr(error, "json_path", "$")
    message = str(getattr(error, "message", error))
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
    reported: list[str] = []
    more = False
    for error in _validator().iter_errors(doc):
        if len(reported) == _MAX_REPORTED:
            more = True
            break
        reported.append(_describe(error))
    if not reported:
        return
    suffix = "; and more" if more else ""
    raise SbomValidationError("SBOM is not valid CycloneDX 1.6: " + "; ".join(reported) + suffix)
