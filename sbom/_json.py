"""Strict JSON parsing for SBOMs that come from outside.

An SBOM binds a firmware image by hash, so two readers must never see different
documents in the same bytes (see :mod:`pumpguard.jsonutil`).
"""

from __future__ import annotations

from typing import Any

from pumpguard.jsonutil import StrictJSONError, loads_strict
from sbom.errors import SbomValidationError

__all__ = ["load_strict"]


def load_strict(data: bytes, what: str = "SBOM") -> Any:
    """Parse UTF-8 JSON, refusing duplicate keys and non-standard constants.

    Raises:
        SbomValidationError: ``data`` is not such JSON.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SbomValidationError(f"{what} must be bytes, not {type(data).__name__}")
    try:
        return loads_strict(data)
    except StrictJSONError as e:
        raise SbomValidationError(f"{what} is not valid JSON: {e}") from e
