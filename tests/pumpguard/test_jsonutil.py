"""Strict JSON: numbers and nesting that would break a later reader are refused.

``1e400`` parses to ``inf``, which PostgreSQL refuses (a 500) and which Python
writes back as the non-JSON ``Infinity``; nesting is bounded before parsing
rather than by the recursion limit, which a later reader would hit first.
"""

from __future__ import annotations

import json
import math

import pytest

from pumpguard.jsonutil import MAX_DEPTH, StrictJSONError, loads_strict


def _nested(depth: int) -> bytes:
    """Objects inside objects around one array: ``depth`` levels in all."""
    return b'{"a":' * (depth - 1) + b"[1]" + b"}" * (depth - 1)


# (case, document, what it parses to)
ACCEPTED: list[tuple[str, bytes, object]] = [
    ("tiny-float-underflows-to-zero", b"1e-400", 0.0),
    ("negative-tiny-float", b"-1e-400", -0.0),
    ("largest-double", b"1.7976931348623157e308", 1.7976931348623157e308),
    ("big-integer-within-double-range", b"1" + b"0" * 300, 10**300),
    ("negative-big-integer", b"-1" + b"0" * 300, -(10**300)),
    ("brackets-in-strings-do-not-nest", b'["' + b"[{" * 100 + b'\\"]"]', ["[{" * 100 + '"]']),
    ("escaped-backslash-before-quote", b'{"a": "\\\\", "b": [1]}', {"a": "\\", "b": [1]}),
    ("depth-at-the-limit-arrays", b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, None),
    ("depth-at-the-limit-mixed", _nested(MAX_DEPTH), None),
]

# (case, document, fragment of the error)
REFUSED: list[tuple[str, bytes, str]] = [
    ("float-overflows-to-inf", b"1e400", "too large"),
    ("float-overflows-to-minus-inf", b"-1e400", "too large"),
    ("overflow-inside-event-detail", b'{"detail": {"value": 1E+400}}', "too large"),
    ("long-mantissa-overflow", b"9" * 400 + b".0", "too large"),
    ("integer-beyond-double-range", b"2" + b"0" * 308, "too large"),
    ("integer-of-400-digits", b"1" * 400, "too large"),
    ("integer-beyond-int-str-limit", b"[" + b"7" * 5000 + b"]", "too large"),
    ("negative-integer-beyond-limit", b"-" + b"7" * 5000, "too large"),
    ("depth-above-the-limit-arrays", b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested"),
    ("depth-above-the-limit-mixed", _nested(MAX_DEPTH + 1), "nested"),
    ("depth-below-recursion-limit", b"[" * 900 + b"]" * 900, "nested"),
    ("depth-far-beyond", b"[" * 200_000 + b"]" * 200_000, "nested"),
]


@pytest.mark.parametrize(("data", "value"), [pytest.param(d, v, id=i) for i, d, v in ACCEPTED])
def test_numbers_and_nesting_every_reader_agrees_on_are_accepted(
    data: bytes, value: object
) -> None:
    parsed = loads_strict(data)
    if value is not None:
        assert parsed == value
    # What was accepted is written back as standard JSON.
    assert loads_strict(json.dumps(parsed, allow_nan=False).encode()) == parsed


@pytest.mark.parametrize(("data", "words"), [pytest.param(d, w, id=i) for i, d, w in REFUSED])
def test_numbers_and_nesting_that_break_a_later_reader_are_refused(data: bytes, words: str) -> None:
    with pytest.raises(StrictJSONError, match=words):
        loads_strict(data)


def test_the_depth_limit_is_a_parameter() -> None:
    assert loads_strict(b"[[[1]]]", max_depth=3) == [[[1]]]
    with pytest.raises(StrictJSONError, match="nested more than 2 deep"):
        loads_strict(b"[[[1]]]", max_depth=2)
    deep = b"[" * 100 + b"]" * 100
    assert loads_strict(deep, max_depth=100) is not None


def test_no_accepted_number_is_infinite_or_nan() -> None:
    value = loads_strict(b"[1e308, -1e308, 5e-324, 1e-400]")
    assert all(math.isfinite(v) for v in value)
