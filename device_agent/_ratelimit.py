"""Pace a transfer to a rate that may change while it runs."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["MAX_SLEEP", "Pacer"]

#: Longest single sleep (seconds). A chunk may be large (a network read of up
#: to 1 MiB) and the limit small (1 KiB/s during an infusion): one sleep for
#: the whole chunk would keep the limit for many minutes after it was lifted.
MAX_SLEEP = 1.0


class Pacer:
    """Sleep as needed so the bytes counted stay below ``rate()`` bytes/s.

    ``rate`` is polled at every :meth:`account` and, while :meth:`account`
    sleeps, at least every :data:`MAX_SLEEP` seconds; ``None`` (or a value
    <= 0) means unlimited. When the rate changes the pacing starts afresh, so
    a limit lifted mid-download (even mid-sleep) takes effect within a second
    and a new limit is not charged for the bytes sent before it.

    Args:
        rate: The current limit in bytes per second, or ``None``.
        sleep: Injected for tests.
        clock: Injected for tests.
    """

    def __init__(
        self,
        rate: Callable[[], float | None] | None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate
        self._sleep = sleep
        self._clock = clock
        self._current: float | None = None
        self._since = 0.0
        self._bytes = 0

    def account(self, nbytes: int) -> None:
        """Count ``nbytes`` just transferred and sleep if they came too fast."""
        if self._rate is None:
            return
        rate = self._rate()
        if rate is None or rate <= 0:
            self._current = None
            return
        now = self._clock()
        if rate != self._current:
            self._current, self._since, self._bytes = rate, now, 0
        self._bytes += nbytes
        ahead = self._bytes / rate - (now - self._since)
        while ahead > 0:
            step = min(ahead, MAX_SLEEP)
            self._sleep(step)
            ahead -= step
            if ahead <= 0:
                return
            # Re-read the limit between slices: the infusion may have ended.
            rate = self._rate()
            if rate is None or rate <= 0:
                self._current = None
                return
            if rate != self._current:
                # A new limit starts afresh, not charged for what was sent.
                self._current, self._since, self._bytes = rate, self._clock(), 0
                return
