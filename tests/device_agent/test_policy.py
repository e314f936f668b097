"""Pure checks of a signed release offered to this pump."""

from __future__ import annotations

import pytest

from device_agent.errors import UpdateRefusedError
from device_agent.policy import check_offered_release
from pumpguard.release import ReleaseInfo


def _release(counter: int = 5, hardware: tuple[str, ...] = ("rev-b",)) -> ReleaseInfo:
    return ReleaseInfo(
        product="sigma-spectrum",
        version="2.0.0",
        release_counter=counter,
        hardware_ids=hardware,
        sbom_sha256="0" * 64,
    )


@pytest.mark.parametrize(
    ("release", "product", "hardware", "counter", "reason"),
    [
        (_release(), "sigma-spectrum", "rev-b", 4, None),
        (_release(), "other-pump", "rev-b", 4, "product"),
        (_release(hardware=("rev-a",)), "sigma-spectrum", "rev-b", 4, "hardware-id"),
        (_release(counter=4), "sigma-spectrum", "rev-b", 4, "rollback"),
        (_release(counter=3), "sigma-spectrum", "rev-b", 4, "rollback"),
    ],
)
def test_offered_release_is_refused_for_the_right_reason(
    release: ReleaseInfo, product: str, hardware: str, counter: int, reason: str | None
) -> None:
    if reason is None:
        check_offered_release(
            release, product=product, hardware_id=hardware, anti_rollback_counter=counter
        )
        return
    with pytest.raises(UpdateRefusedError) as raised:
        check_offered_release(
            release, product=product, hardware_id=hardware, anti_rollback_counter=counter
        )
    assert raised.value.reason == reason
