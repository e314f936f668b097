"""Which release a pump is assigned: a pure choice, no I/O.

The check-in loads the candidate releases and the pump's facts and asks
:func:`choose_release`; keeping the choice free of database and request access
lets the rollout issue extend it (staged percentages, recalls, pinning) and
lets tests cover it with plain tables.

The assignment is advice only: the pump verifies every byte through TUF and
refuses anything older than what it runs (threat TUF-ROLLBACK), so a wrong or
malicious assignment can withhold an update but cannot install unsigned or
older firmware.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

__all__ = ["DeviceFacts", "ReleaseFacts", "choose_release"]


class ReleaseFacts(Protocol):
    """What the choice needs to know about a published release.

    The ``Release`` model satisfies this protocol, and so does any small
    record a test builds.
    """

    @property
    def product(self) -> str:
        """Product line of the release."""

    @property
    def version(self) -> str:
        """Semantic version of the release."""

    @property
    def release_counter(self) -> int:
        """Anti-rollback counter of the release."""

    @property
    def hardware_ids(self) -> Sequence[str]:
        """Hardware revisions the release may run on."""


R = TypeVar("R", bound=ReleaseFacts)


@dataclass(frozen=True)
class DeviceFacts:
    """What the choice needs to know about a pump.

    Attributes:
        device_id: The enrolled device id.
        product: The product the pump is enrolled for.
        hardware_id: The pump's hardware revision.
        release_counter: The release counter the pump reports running.
    """

    device_id: str
    product: str
    hardware_id: str
    release_counter: int


def choose_release(releases: Iterable[R], device: DeviceFacts) -> R | None:
    """The release ``device`` should run next, or None if it is up to date.

    The assignment is the newest release (highest ``release_counter``) of the
    pump's product that lists the pump's hardware id, and only if it is newer
    than what the pump reports; a pump is never pointed at an older or equal
    release (threat TUF-ROLLBACK), nor at firmware for other hardware.

    Args:
        releases: Published releases; any order, other products are ignored.
        device: The pump's enrollment and reported state.

    Returns:
        One of ``releases``, or None.
    """
    best: R | None = None
    for release in releases:
        if release.product != device.product:
            continue
        if device.hardware_id not in release.hardware_ids:
            continue
        if release.release_counter <= device.release_counter:
            continue
        if best is None or release.release_counter > best.release_counter:
            best = release
    return best
