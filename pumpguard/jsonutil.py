"""Strict JSON parsing for data that comes from outside.

Two readers must never see different documents in the same bytes, and what is
accepted here must survive being stored and served again: duplicate object
keys (which :mod:`json` silently resolves to the last one), the non-standard
constants ``NaN`` and ``Infinity``, numbers beyond the range of an IEEE double
(``1e400`` would become ``inf``; PostgreSQL then refuses it and other readers
disagree on it) and nesting deeper than :data:`MAX_DEPTH` are refused.
"""

from __future__ import annotations

import json
import math
import re
import sys
from itertools import accumulate
from typing import Any, NoReturn

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "StrictJSONError", "loads_strict"]

#: Arrays and objects nested deeper than this are refused (``[]`` is depth 1).
#: Check-ins, events and manifests are a few levels deep; a CycloneDX SBOM
#: nests components (two levels each, plus pedigree and evidence), so the
#: default leaves room for about thirty levels of sub-components while staying
#: far below Python's recursion limit, which every later reader
#: (:func:`json.dumps`, jsonschema, the database driver) walks into.
MAX_DEPTH = 64

#: Digits of the largest integer accepted: every accepted integer converts to
#: a finite float (``float(10**309)`` overflows), as the number rule says.
MAX_INT_DIGITS = len(str(int(sys.float_info.max)))

# A JSON string, escaped quotes included; what is left are the brackets.
_STRING_RE = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_BRACKET_RE = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


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


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(f"the number {_excerpt(text)} is too large for a double")
    return value


def _bounded_int(text: str) -> int:
    # Checked before int(), which is quadratic in the digits and refuses more
    # than sys.get_int_max_str_digits() of them with a plain ValueError.
    if len(text.lstrip("-")) <= MAX_INT_DIGITS:
        value = int(text)
        if abs(value) <= sys.float_info.max:
            return value
    raise StrictJSONError(f"the integer {_excerpt(text)} is too large")


def _excerpt(text: str) -> str:
    return text if len(text) <= 20 else f"{text[:12]}... ({len(text)} characters)"


def _nested_deeper(text: str, max_depth: int) -> bool:
    """Whether arrays and objects nest more than ``max_depth`` deep in ``text``."""
    if text.count("[") + text.count("{") <= max_depth:
        return False
    # Brackets inside strings do not count; the running sum is the depth.
    brackets = _BRACKET_RE.findall(_STRING_RE.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > max_depth


def loads_strict(data: bytes | bytearray | memoryview, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse UTF-8 JSON, refusing what different readers may read differently.

    Args:
        data: The document.
        max_depth: Deepest nesting of arrays and objects accepted.

    Raises:
        StrictJSONError: Not UTF-8, not JSON, a duplicate key, NaN/Infinity,
            a number out of the range of an IEEE double (``1e400``, an
            integer of hundreds of digits), or nested deeper than
            ``max_depth``; the message says which.
    """
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise StrictJSONError("not UTF-8 text") from e
    # Measured before parsing: the parser recurses once per level.
    if _nested_deeper(text, max_depth):
        raise StrictJSONError(f"arrays and objects nested more than {max_depth} deep")
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except StrictJSONError:
        raise
    except RecursionError as e:
        raise StrictJSONError("nested too deeply") from e
    except ValueError as e:
        raise StrictJSONError(f"not valid JSON: {e}") from e
