"""The device request timestamp: only plain, bounded whole seconds are accepted.

``int()`` takes far more than a device writes ("+5", " 5", "5_0", Arabic-Indic
digits, a 10 000-digit number); the server then subtracts the clock as a float
and an enormous value raised OverflowError (a 500) instead of a refusal.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pumpguard.device_auth import (
    HEADER_TIMESTAMP,
    MAX_TIMESTAMP,
    DeviceAuthError,
    sign_request,
    verify_request_signature,
)

KEY = Ed25519PrivateKey.generate()
DEVICE = "pump-0001"
PATH = "/api/v1/devices/pump-0001/checkin"
BODY = b'{"firmware": "1.0.0"}'


def _verify(timestamp: str, signed_as: int) -> tuple[int, str]:
    headers = sign_request(KEY, DEVICE, "POST", PATH, BODY, timestamp=signed_as)
    headers[HEADER_TIMESTAMP] = timestamp
    return verify_request_signature(KEY.public_key(), headers, DEVICE, "POST", PATH, BODY)


@pytest.mark.parametrize(
    ("timestamp", "signed_as"),
    [
        pytest.param("1700000000", 1700000000, id="now-ish"),
        pytest.param("0", 0, id="epoch"),
        pytest.param(str(MAX_TIMESTAMP), MAX_TIMESTAMP, id="year-9999"),
    ],
)
def test_a_plain_timestamp_verifies(timestamp: str, signed_as: int) -> None:
    assert _verify(timestamp, signed_as)[0] == signed_as


@pytest.mark.parametrize(
    ("timestamp", "signed_as"),
    [
        pytest.param("9" * 5000, 0, id="beyond-int-str-limit"),
        pytest.param("1" + "0" * 400, 10**400, id="overflows-a-float"),
        pytest.param(str(2**63), 2**63, id="overflows-int64"),
        pytest.param(str(MAX_TIMESTAMP + 1), MAX_TIMESTAMP + 1, id="after-year-9999"),
        pytest.param("-5", -5, id="negative"),
        pytest.param("+1700000000", 1700000000, id="plus-sign"),
        pytest.param(" 1700000000", 1700000000, id="leading-space"),
        pytest.param("1700000000\n", 1700000000, id="trailing-newline"),
        pytest.param("1_700_000_000", 1700000000, id="underscores"),
        pytest.param("01700000000", 1700000000, id="leading-zero"),
        pytest.param("\u0665", 5, id="arabic-indic-digit"),
        pytest.param("\uff11\uff17", 17, id="fullwidth-digits"),
        pytest.param("1.7e9", 1700000000, id="float"),
    ],
)
def test_a_timestamp_that_is_not_plain_bounded_seconds_is_malformed(
    timestamp: str, signed_as: int
) -> None:
    # Signed over str(signed_as) so only the header's form is wrong; the
    # check comes before any arithmetic, so nothing can overflow.
    with pytest.raises(DeviceAuthError, match=f"{HEADER_TIMESTAMP} header is malformed"):
        _verify(timestamp, signed_as)
