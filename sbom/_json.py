"""Strict JSON parsing for SBOMs that come from outside.

An SBOM binds a firmware image by hash, so two readers must never see different
documents in the same bytes: duplicate object keys (which :mod:`json` would
silently resolve to the last one) and the non-standard constants ``NaN`` and
``Infinity`` are refused.
"""

from __future__ import annotations

import json
from typing import Any

from sbom.errors import SbomValidationError


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_strict(data: bytes, what: str = "SBOM") -> Any:
    """Parse UTF-8 JSON, refusing duplicate keys and non-standard constants.

    Raises:
        SbomValidationError: ``data`` is not such JSON.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SbomValidationError(f"{what} must be bytes, not {type(data).__name__}")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise SbomValidationError(f"{what} is not UTF-8 text") from e
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _DuplicateKeyError as e:
        raise SbomValidationError(f"{what} JSON has a {e}") from e
    except (ValueError, RecursionError) as e:
        raise SbomValidationError(f"{what} is not valid JSON: {e}") from e
