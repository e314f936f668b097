"""Pure checks of an offered release against the pump's own facts (no I/O).

TUF has already proven that release engineers signed the target; these checks
decide whether *this* pump may run it. The server assigns releases but is not
trusted to choose well (DESIGN.md, Server: a compromised server may withhold
updates but must not install an older release or another pump's firmware).
"""

from __future__ import annotations

from device_agent.errors import UpdateRefusedError
from pumpguard.contract import RefusalReason
from pumpguard.release import ReleaseInfo

__all__ = ["check_offered_release"]


def check_offered_release(
    release: ReleaseInfo,
    *,
    product: str,
    hardware_id: str,
    anti_rollback_counter: int,
) -> None:
    """Refuse a signed release this pump must not install.

    Args:
        release: The release facts from the verified TUF target.
        product: The pump's product line.
        hardware_id: The pump's hardware revision.
        anti_rollback_counter: The pump's persisted anti-rollback counter.

    Raises:
        UpdateRefusedError: With reason ``product`` (another product line),
            ``hardware-id`` (not built for this hardware, threat AGT-WRONG-HW) or
            ``rollback`` (release_counter not above the pump's counter, threat
            AGT-ROLLBACK: an older signed release replayed by a compromised
            server).
    """
    if release.product != product:
        raise UpdateRefusedError(
            f"release {release.product} {release.version} is for another product "
            f"(this pump is {product})",
            reason=RefusalReason.PRODUCT,
        )
    if not release.runs_on(hardware_id):
        raise UpdateRefusedError(
            f"release {release.version} is not built for hardware {hardware_id} "
            f"(it lists {', '.join(release.hardware_ids)})",
            reason=RefusalReason.HARDWARE_ID,
        )
    if release.release_counter <= anti_rollback_counter:
        raise UpdateRefusedError(
            f"release {release.version} has release_counter {release.release_counter}, "
            f"not above the pump's anti-rollback counter {anti_rollback_counter}",
            reason=RefusalReason.ROLLBACK,
        )
