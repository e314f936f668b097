"""Strict JSON parsing for data that comes from outside.

Two readers must never see different documents in the same bytes: duplicate
object keys (which :mod:`json` silently resolves to the last one) and the
non-standard constants ``NaN`` and ``Infinity`` are refused.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

__all__ = ["StrictJSONError", "loads_strict"]


class StrictJSONError(ValueError):
    """The bytes are not UTF-8 JSON as :func:`loads_strict` accepts it."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise StrictJSONError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> NoReturn:
    raise StrictJSONError(f"{name} is not JSON")


def loads_strict(data: bytes | bytearray | memoryview) -> Any:
    """Parse UTF-8 JSON, refusing duplicate keys and non-standard constants.

    Raises:
        StrictJSONError: Not UTF-8, not JSON, a duplicate key, NaN/Infinity,
            or nesting too deep for the parser; the message says which.
    """
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise StrictJSONError("not UTF-8 text") from e
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except StrictJSONError:
        raise
    except RecursionError as e:
        raise StrictJSONError("nested too deeply") from e
    except ValueError as e:
        raise StrictJSONError(f"not valid JSON: {e}") from e
