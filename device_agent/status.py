"""The therapy interlock: what the pump is doing, and whether it is safe to act.

The therapy controller (the pump's own software, outside this agent) publishes
its status as a small JSON document, either in a file it replaces atomically or
on a Unix socket that answers one document per connection::

    {"therapy": "idle" | "running" | "programmed",
     "on_mains": true, "battery_percent": 85,
     "updated_at": "2026-11-25T02:00:00Z"}

:func:`assess_safety` is the pure decision (no I/O): installing, rebooting and
committing happen only when no infusion runs or is programmed, the battery can
finish the job, the status is fresh and the time is inside the maintenance
window (threats MED-INFUSION, MED-POWER). When anything is unknown the answer is
"not safe": an unreadable or stale status defers the update, it never lets it
through.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any, Protocol

from device_agent.config import MaintenanceWindow, SafetyConfig
from device_agent.errors import PumpStatusError
from pumpguard.contract import TherapyState
from pumpguard.fsutil import FileTooLargeError, read_capped

__all__ = [
    "STATUS_CLOCK_SKEW_TOLERANCE",
    "FileStatusProvider",
    "PumpStatus",
    "SafetyDecision",
    "SocketStatusProvider",
    "StatusProvider",
    "assess_safety",
    "download_rate",
    "make_status_provider",
    "parse_status",
]

THERAPY_STATES = tuple(s.value for s in TherapyState)
_MAX_STATUS = 4096
#: Seconds a status may be stamped ahead of the agent's clock and still count
#: as fresh. The therapy controller and the agent run on the same pump and
#: normally read the same clock, so a legitimate status is at most a little
#: ahead (a timestamp rounded up to the next second, two clocks ticking a
#: moment apart). A status further in the future says nothing about how old it
#: is: the clock was stepped back (NTP, an RTC reset) or the controller's clock
#: runs ahead, and a controller that hung right after writing "idle" would look
#: fresh until the clock caught up, possibly for years. Such a status is stale.
STATUS_CLOCK_SKEW_TOLERANCE = 5.0


@dataclass(frozen=True)
class PumpStatus:
    """One status report of the therapy controller."""

    therapy: TherapyState
    on_mains: bool
    battery_percent: int
    updated_at: datetime

    @property
    def therapy_active(self) -> bool:
        """An infusion is running or programmed (about to start)."""
        return self.therapy != TherapyState.IDLE


@dataclass(frozen=True)
class SafetyDecision:
    """Whether the agent may install, reboot or commit now, and if not why.

    Attributes:
        safe: True when every rule allows it.
        reason: Machine-readable reason when not safe (reported to the server
            with the ``deferred`` event), e.g. ``"infusion-running"``.
        detail: One human sentence.
    """

    safe: bool
    reason: str | None
    detail: str


def parse_status(data: bytes, source: str) -> PumpStatus:
    """Parse and check a status document.

    Raises:
        PumpStatusError: Not JSON, a field missing or of the wrong type.
    """
    try:
        doc: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise PumpStatusError(f"pump status from {source} is not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise PumpStatusError(f"pump status from {source} must be a JSON object")
    raw_therapy = doc.get("therapy")
    if not isinstance(raw_therapy, str) or raw_therapy not in THERAPY_STATES:
        raise PumpStatusError(
            f"pump status from {source}: therapy must be one of {', '.join(THERAPY_STATES)}"
        )
    on_mains = doc.get("on_mains")
    if not isinstance(on_mains, bool):
        raise PumpStatusError(f"pump status from {source}: on_mains must be true or false")
    battery = doc.get("battery_percent")
    if isinstance(battery, bool) or not isinstance(battery, int) or not 0 <= battery <= 100:
        raise PumpStatusError(
            f"pump status from {source}: battery_percent must be an integer 0-100"
        )
    raw_at = doc.get("updated_at")
    try:
        if not isinstance(raw_at, str):
            raise ValueError("missing")
        updated_at = datetime.fromisoformat(raw_at.replace("Z", "+00:00"))
        if updated_at.tzinfo is None:
            raise ValueError("no time zone")
    except ValueError as e:
        raise PumpStatusError(
            f"pump status from {source}: updated_at must be an ISO 8601 time with zone ({e})"
        ) from e
    return PumpStatus(TherapyState(raw_therapy), on_mains, battery, updated_at.astimezone(UTC))


class StatusProvider(Protocol):
    """Where the pump's status comes from."""

    def read(self) -> PumpStatus:
        """The current status. Raises PumpStatusError when unavailable."""
        ...


class FileStatusProvider:
    """A JSON status file the therapy controller replaces atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> PumpStatus:
        """Read the status file."""
        try:
            data = read_capped(self.path, _MAX_STATUS, f"pump status {self.path}")
        except FileTooLargeError as e:
            raise PumpStatusError(str(e)) from e
        except OSError as e:
            raise PumpStatusError(f"cannot read pump status {self.path}: {e.strerror}") from e
        return parse_status(data, str(self.path))


class SocketStatusProvider:
    """A Unix stream socket that sends one status document per connection."""

    def __init__(self, path: Path, timeout: float = 2.0) -> None:
        self.path, self.timeout = path, timeout

    def read(self) -> PumpStatus:
        """Connect, read one document (until EOF or newline), close."""
        chunks: list[bytes] = []
        size = 0
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(str(self.path))
                while size <= _MAX_STATUS:
                    chunk = sock.recv(1024)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                    if b"\n" in chunk:
                        break
        except OSError as e:
            raise PumpStatusError(f"cannot read pump status socket {self.path}: {e}") from e
        if size > _MAX_STATUS:
            raise PumpStatusError(f"pump status socket {self.path} sent too much data")
        return parse_status(b"".join(chunks).split(b"\n", 1)[0], str(self.path))


def make_status_provider(config: SafetyConfig) -> StatusProvider:
    """The provider the configuration names."""
    if config.status_kind == "socket":
        return SocketStatusProvider(config.status_path)
    return FileStatusProvider(config.status_path)


def assess_safety(
    status: PumpStatus | None,
    rules: SafetyConfig,
    now: datetime,
    local_time: time,
    *,
    error: str | None = None,
) -> SafetyDecision:
    """Decide whether installing, rebooting or committing may happen now.

    Pure: the caller reads the status and the clocks.

    Args:
        status: The latest status, or None if it could not be read.
        rules: The configured interlock rules.
        now: The current time (UTC), to judge the status' age.
        local_time: The pump's local wall-clock time, for the window.
        error: Why the status could not be read, for the detail text.
    """
    if status is None:
        return SafetyDecision(False, "status-unavailable", f"pump status unavailable: {error}")
    age = (now - status.updated_at).total_seconds()
    if age < -STATUS_CLOCK_SKEW_TOLERANCE:
        # Not fresh but of unknown age: a hung controller's last "idle" must
        # not pass for the current state (see STATUS_CLOCK_SKEW_TOLERANCE).
        return SafetyDecision(
            False,
            "status-stale",
            f"pump status is stamped {-age:.0f} s in the future (clock skew; tolerance "
            f"{STATUS_CLOCK_SKEW_TOLERANCE:g} s), its age is unknown",
        )
    if age > rules.max_status_age:
        return SafetyDecision(
            False,
            "status-stale",
            f"pump status is {age:.0f} s old (limit {rules.max_status_age:g} s)",
        )
    if status.therapy == TherapyState.RUNNING:
        return SafetyDecision(False, "infusion-running", "an infusion is running")
    if status.therapy == TherapyState.PROGRAMMED:
        return SafetyDecision(False, "infusion-programmed", "an infusion is programmed")
    if not status.on_mains and status.battery_percent < rules.min_battery_percent:
        return SafetyDecision(
            False,
            "battery-low",
            f"on battery at {status.battery_percent}% (needs {rules.min_battery_percent}% "
            "off mains)",
        )
    window: MaintenanceWindow | None = rules.maintenance_window
    if window is not None and not window.contains(local_time):
        return SafetyDecision(
            False, "outside-maintenance-window", f"{local_time:%H:%M} is outside {window}"
        )
    return SafetyDecision(True, None, "safe")


def download_rate(status: PumpStatus | None, rules: SafetyConfig) -> float | None:
    """Bytes per second the download may use now; None for unlimited.

    Downloading never touches a bootable slot, so it may go on during therapy,
    but rate-limited so the pump's network stays free for clinical traffic; an
    unknown status is treated as therapy (fail safe).
    """
    if status is None or status.therapy_active:
        return float(rules.therapy_download_rate)
    return None
