"""The therapy interlock: when installing, rebooting and committing may happen."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from device_agent.config import MaintenanceWindow, SafetyConfig
from device_agent.errors import PumpStatusError
from device_agent.status import (
    FileStatusProvider,
    PumpStatus,
    SocketStatusProvider,
    assess_safety,
    download_rate,
    parse_status,
)

NOW = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
RULES = SafetyConfig(
    status_kind="file",
    status_path=Path("unused"),
    max_status_age=30,
    min_battery_percent=40,
    maintenance_window=None,
    therapy_download_rate=1000,
)
IDLE = PumpStatus("idle", True, 100, NOW)


@pytest.mark.parametrize(
    ("status", "rules", "local", "reason"),
    [
        (IDLE, RULES, time(12), None),
        (replace(IDLE, therapy="running"), RULES, time(12), "infusion-running"),
        (replace(IDLE, therapy="programmed"), RULES, time(12), "infusion-programmed"),
        (replace(IDLE, on_mains=False, battery_percent=39), RULES, time(12), "battery-low"),
        (replace(IDLE, on_mains=False, battery_percent=40), RULES, time(12), None),
        (replace(IDLE, battery_percent=5), RULES, time(12), None),  # on mains
        (replace(IDLE, updated_at=NOW - timedelta(seconds=31)), RULES, time(12), "status-stale"),
        (None, RULES, time(12), "status-unavailable"),
        (
            IDLE,
            replace(RULES, maintenance_window=MaintenanceWindow(time(22), time(6))),
            time(12),
            "outside-maintenance-window",
        ),
        (
            IDLE,
            replace(RULES, maintenance_window=MaintenanceWindow(time(22), time(6))),
            time(2),
            None,
        ),
        (
            IDLE,
            replace(RULES, maintenance_window=MaintenanceWindow(time(1), time(3))),
            time(3),
            "outside-maintenance-window",
        ),
        # Stamped in the future: a clock stepped back or running ahead must not
        # keep a hung controller's last "idle" fresh forever ...
        pytest.param(
            replace(IDLE, updated_at=NOW + timedelta(days=365)),
            RULES,
            time(12),
            "status-stale",
            id="future-1y-status-stale",
        ),
        pytest.param(
            replace(IDLE, updated_at=NOW + timedelta(minutes=1)),
            RULES,
            time(12),
            "status-stale",
            id="future-1min-status-stale",
        ),
        # ... but a second ahead is ordinary rounding between two clocks.
        pytest.param(
            replace(IDLE, updated_at=NOW + timedelta(seconds=1)),
            RULES,
            time(12),
            None,
            id="future-1s-safe",
        ),
    ],
)
def test_install_is_allowed_only_when_every_rule_allows_it(
    status: PumpStatus | None, rules: SafetyConfig, local: time, reason: str | None
) -> None:
    decision = assess_safety(status, rules, NOW, local, error="gone")
    assert decision.safe is (reason is None)
    assert decision.reason == reason


def test_therapy_outranks_every_other_reason() -> None:
    status = replace(IDLE, therapy="running", on_mains=False, battery_percent=1)
    assert assess_safety(status, RULES, NOW, time(12)).reason == "infusion-running"


def test_download_is_rate_limited_during_therapy_and_when_status_unknown() -> None:
    assert download_rate(IDLE, RULES) is None
    assert download_rate(replace(IDLE, therapy="running"), RULES) == 1000
    assert download_rate(None, RULES) == 1000


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"therapy": "paused"}', "therapy must be one of"),
        (b'{"therapy": "idle", "on_mains": 1}', "on_mains"),
        (b'{"therapy": "idle", "on_mains": true, "battery_percent": 101}', "battery_percent"),
        (
            b'{"therapy": "idle", "on_mains": true, "battery_percent": 5, '
            b'"updated_at": "2026-11-25T10:00:00"}',
            "updated_at",
        ),
    ],
)
def test_malformed_status_is_a_clear_error(document: bytes, message: str) -> None:
    with pytest.raises(PumpStatusError, match=message):
        parse_status(document, "test")


def test_file_provider_reads_the_controllers_status(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    path.write_text(
        '{"therapy": "running", "on_mains": false, "battery_percent": 55,'
        ' "updated_at": "2026-11-25T10:00:00Z"}'
    )
    status = FileStatusProvider(path).read()
    assert (status.therapy, status.on_mains, status.battery_percent) == ("running", False, 55)
    with pytest.raises(PumpStatusError, match="cannot read"):
        FileStatusProvider(tmp_path / "missing.json").read()


def test_socket_provider_reads_one_document(tmp_path: Path) -> None:
    import socket
    import threading

    path = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(
                b'{"therapy": "programmed", "on_mains": true, "battery_percent": 80,'
                b' "updated_at": "2026-11-25T10:00:00+00:00"}\n'
            )

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        assert SocketStatusProvider(path).read().therapy == "programmed"
    finally:
        thread.join(5)
        server.close()
    with pytest.raises(PumpStatusError, match="socket"):
        SocketStatusProvider(tmp_path / "none.sock").read()
