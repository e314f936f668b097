"""The agent's configuration: one TOML file on the pump.

Relative paths are resolved against the file's directory, so a pump image (or
the simulator) can ship a self-contained folder. Every value is checked when
the file is loaded; a wrong one is an :class:`AgentConfigError` that names the
key, never a surprise in the middle of an update.

The slots are overwritten by every update, so neither may be the other slot,
nor any other file the configuration names, nor lie inside the state or
metadata directory: compared by resolved path and, for files that exist, by
identity (device and inode; the device number for block devices), so
``slots/../slots/a.img``, a symlink or a second device node for the same
partition are caught. Each slot's :class:`SlotPath` keeps that list, and
:mod:`device_agent.download` checks the opened slot against it again before
writing a byte (a symlink swapped after loading).

Example (every key shown; the ones with defaults may be left out)::

    [device]
    id = "pump-0001"
    product = "sigma-spectrum"
    hardware_id = "rev-b"
    key = "device.key"                 # Ed25519 PKCS#8 PEM, from `pumpguard device keygen`

    [server]
    url = "https://updates.example.org"
    metadata_url = "https://cdn.example.org/tuf/metadata"   # default: url + /tuf/metadata
    targets_url = "https://cdn.example.org/tuf/targets"     # default: url + /tuf/targets
    ca_file = "ca.pem"                 # optional; mutual TLS with client_cert/client_key
    timeout = 30                       # seconds per connect / read; a whole check-in or event post
    metadata_deadline = 120            # seconds for a whole metadata file (slow retrieval)
    min_firmware_rate = 16384          # bytes/s the firmware download must average (>= 1024)
    poll_interval = 300                # until the server says otherwise
    max_backoff = 3600

    [tuf]
    root = "root.json"                 # shipped with the pump: never trust-on-first-use
    metadata_dir = "state/tuf"

    [state]
    dir = "state"

    [slots]                            # files by default, block devices on a pump
    a = "slots/a.img"                  # never another configured file, nor inside
    b = "slots/b.img"                  # the state or metadata directory

    [boot]
    backend = "file"                   # file | grub | uboot
    env = "state/bootenv"              # env file (file, grub) or fw_env.config (uboot)
    attempts = 3                       # boot attempts a new slot gets
    booted_slot = "file:state/booted"  # or "cmdline" (pumpguard.slot= in /proc/cmdline)
    reboot_command = ["systemctl", "reboot"]   # or "exit" (the simulator)

    [selftest]
    command = ["/usr/libexec/pump-selftest", "{slot}"]
    timeout = 120

    [safety]
    status = "file:pump-status.json"   # or "socket:/run/therapy/status.sock"
    max_status_age = 30                # seconds (<= 300); an older status means "not safe"
    min_battery_percent = 40           # when off mains power
    maintenance_window = "22:00-06:00" # local time; leave out for "any time"
    therapy_download_rate = 262144     # bytes/s while an infusion runs (>= 1024)

    [agent]
    max_state_repeats = 3              # a state entered this often without finishing fails
                                       # (downloading: attempts in a row without progress)
    checkpoint_interval = 5            # seconds of download between durable checkpoints
                                       # (also every 16 MiB); 0.25 to 600
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import time
from pathlib import Path, PosixPath
from typing import Any
from urllib.parse import urlsplit

from device_agent.bootctl import MAX_ATTEMPTS
from device_agent.bootctl.uboot import read_fw_env_config
from device_agent.errors import AgentConfigError, BootControlError
from pumpguard.contract import is_device_id
from pumpguard.errors import ConfigError, ReleaseContractError
from pumpguard.http import check_server_url, is_loopback
from pumpguard.release import validate_hardware_id, validate_product

__all__ = [
    "AgentConfig",
    "BootConfig",
    "MaintenanceWindow",
    "SafetyConfig",
    "ServerConfig",
    "SlotGuard",
    "SlotPath",
    "load_config",
]

# Slot names travel to the bootloader (GRUB/U-Boot variables) and to the
# server's check-in: the intersection of what both accept.
_SLOT_RE = re.compile(r"^[a-z0-9_]{1,16}$")
_WINDOW_RE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_BACKENDS = ("file", "grub", "uboot")
#: Upper bound of ``[safety] max_status_age``. The status says whether an
#: infusion runs *now*; a therapy controller republishes it every few seconds,
#: and one silent for minutes has to count as unknown (not safe), never as
#: its last word ("idle") going on for a day.
MAX_STATUS_AGE = 300
#: Lower bound of ``[server] min_firmware_rate`` (bytes/s). The firmware's
#: deadline is ``metadata_deadline + length / min_firmware_rate``: at 1 B/s a
#: 64 MiB image could take two years, which is no slow-retrieval defence at
#: all. 1 KiB/s still lets a poor cellular link finish (64 MiB in a day) and
#: matches the lowest ``therapy_download_rate``.
MIN_FIRMWARE_RATE = 1024
#: Bounds of ``[agent] checkpoint_interval`` (seconds). A checkpoint is an
#: fsync of the slot and a durable state write: more than four a second would
#: wear the flash for nothing, and beyond ten minutes a power loss on a slow
#: link (1 KiB/s during an infusion) costs too much of the download.
CHECKPOINT_INTERVAL_RANGE = (0.25, 600.0)


@dataclass(frozen=True)
class MaintenanceWindow:
    """A daily window (local time) in which installing is allowed.

    ``start > end`` wraps midnight (``22:00-06:00``).
    """

    start: time
    end: time

    def contains(self, now: time) -> bool:
        """Whether the local time ``now`` lies inside the window."""
        if self.start <= self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class SlotGuard:
    """What a slot must never be: every other path the configuration names.

    Attributes:
        files: ``(what, path)`` of the other slot and every configured file.
        dirs: ``(what, path)`` of directories the agent writes into.
        uboot_config: A U-Boot ``fw_env.config`` whose environment copies are
            protected as well (read on every check: provisioned later).
    """

    files: tuple[tuple[str, Path], ...]
    dirs: tuple[tuple[str, Path], ...]
    uboot_config: Path | None = None

    def conflict(self, slot: Path, fd: int | None = None) -> str | None:
        """How ``slot`` (or the file open as ``fd``) coincides with a protected path.

        Compares the resolved paths, and, for files that exist, their identity:
        device and inode, or the device number of a block or character device
        (``/dev/disk/by-partlabel/x`` and ``/dev/mmcblk0p2`` are one device).

        Returns:
            A description of the conflict, or ``None`` when there is none.

        Raises:
            OSError: ``fd`` cannot be examined.
        """
        if fd is not None:
            st: os.stat_result | None = os.fstat(fd)
            try:
                # The file actually opened, whatever the path says now.
                real = Path(f"/proc/self/fd/{fd}").readlink()
            except OSError:
                real = _resolved(slot)
        else:
            real = _resolved(slot)
            try:
                st = slot.stat()
            except OSError:
                st = None  # not created yet: the resolved path must do
        for what, other in self._files():
            if _resolved(other) == real:
                return f"is {what} ({other})"
            if st is None:
                continue
            try:
                other_st = other.stat()
            except OSError:
                continue
            if _same_file(st, other_st):
                return f"is the same file as {what} ({other})"
        for what, directory in self.dirs:
            if real.is_relative_to(_resolved(directory)):
                return f"lies inside {what} ({directory})"
        return None

    def _files(self) -> Iterator[tuple[str, Path]]:
        yield from self.files
        if self.uboot_config is not None:
            # A missing or malformed fw_env.config is the boot backend's error.
            with contextlib.suppress(BootControlError):
                for number, copy in enumerate(read_fw_env_config(self.uboot_config), 1):
                    yield f"U-Boot environment copy {number}", copy.device


def _resolved(path: Path) -> Path:
    # os.path.realpath, not Path.resolve: a symlink loop must not raise.
    return Path(os.path.realpath(path))


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
        return True
    kind = stat.S_IFMT(a.st_mode)
    return (
        kind == stat.S_IFMT(b.st_mode)
        and kind in (stat.S_IFBLK, stat.S_IFCHR)
        and a.st_rdev == b.st_rdev
    )


class SlotPath(PosixPath):
    """A configured slot's path, carrying the :class:`SlotGuard` it was checked with.

    It is an ordinary :class:`~pathlib.Path` everywhere else;
    :func:`device_agent.download.download_to_slot` checks the opened slot
    against :attr:`guard` again before it writes.
    """

    guard: SlotGuard | None = None

    @classmethod
    def guarded(cls, path: Path, guard: SlotGuard) -> SlotPath:
        slot = cls(path)
        slot.guard = guard
        return slot


@dataclass(frozen=True)
class ServerConfig:
    """Where the agent checks in and fetches TUF metadata and targets."""

    url: str
    metadata_url: str
    targets_url: str
    ca_file: Path | None
    client_cert: Path | None
    client_key: Path | None
    timeout: float
    metadata_deadline: float
    min_firmware_rate: int
    poll_interval: float
    max_backoff: float


@dataclass(frozen=True)
class BootConfig:
    """Boot control: backend, its environment, trial attempts, reboot."""

    backend: str
    env: Path
    attempts: int
    booted_slot: str
    booted_slot_file: Path | None
    reboot_command: tuple[str, ...] | None  # None: exit the process (simulator)


@dataclass(frozen=True)
class SafetyConfig:
    """The therapy interlock: where the pump's status comes from and the rules."""

    status_kind: str
    status_path: Path
    max_status_age: float
    min_battery_percent: int
    maintenance_window: MaintenanceWindow | None
    therapy_download_rate: int


@dataclass(frozen=True)
class AgentConfig:
    """The whole agent configuration (see the module docstring)."""

    path: Path
    device_id: str
    product: str
    hardware_id: str
    key: Path
    server: ServerConfig
    root: Path
    metadata_dir: Path
    state_dir: Path
    slots: dict[str, Path]
    boot: BootConfig
    selftest_command: tuple[str, ...]
    selftest_timeout: float
    safety: SafetyConfig
    max_state_repeats: int
    checkpoint_interval: float


class _Section:
    """Typed access to one TOML table, with errors that name the key."""

    def __init__(self, data: Mapping[str, Any], name: str, base: Path, known: set[str]):
        self.data, self.name, self.base = data, name, base
        unknown = sorted(set(data) - known)
        if unknown:
            raise AgentConfigError(f"[{name}] has unknown key(s): {', '.join(unknown)}")

    def _where(self, key: str) -> str:
        return f"[{self.name}] {key}"

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise AgentConfigError(f"{self._where(key)} is required")
        if not isinstance(value, str) or not value:
            raise AgentConfigError(f"{self._where(key)} must be a non-empty string")
        return value

    def opt_text(self, key: str) -> str | None:
        return self.text(key) if key in self.data else None

    def path(self, key: str, default: str | None = None) -> Path:
        return self.base / self.text(key, default)

    def opt_path(self, key: str) -> Path | None:
        return self.path(key) if key in self.data else None

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise AgentConfigError(f"{self._where(key)} must be a number")
        if not low <= value <= high:
            raise AgentConfigError(f"{self._where(key)} must be between {low:g} and {high:g}")
        return float(value)

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise AgentConfigError(f"{self._where(key)} must be an integer")
        if not low <= value <= high:
            raise AgentConfigError(f"{self._where(key)} must be between {low} and {high}")
        return value

    def command(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key)
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v for v in value)
        ):
            raise AgentConfigError(f"{self._where(key)} must be a non-empty list of strings")
        return tuple(value)


def _table(data: Mapping[str, Any], name: str, required: bool = True) -> Mapping[str, Any]:
    value = data.get(name)
    if value is None:
        if required:
            raise AgentConfigError(f"section [{name}] is missing")
        return {}
    if not isinstance(value, dict):
        raise AgentConfigError(f"[{name}] must be a table")
    return value


def _url(value: str, where: str) -> str:
    # Device requests are signed, but TUF metadata and firmware are fetched
    # in the clear only on loopback (tests, the demo): elsewhere TLS keeps
    # hospital traffic private even though TUF already keeps it honest.
    try:
        parts = urlsplit(value)
        host, port = parts.hostname, parts.port
    except ValueError as e:  # "http://[::1", a port out of range or not a number
        raise AgentConfigError(f"{where} {value!r} is not a valid URL: {e}") from e
    if parts.scheme not in ("http", "https") or not host:
        raise AgentConfigError(f"{where} {value!r} is not an http(s) URL")
    if port == 0:
        raise AgentConfigError(f"{where} {value!r}: port 0 cannot be connected to")
    if parts.scheme == "http" and not is_loopback(host):
        raise AgentConfigError(f"{where} {value!r}: plain http is allowed only to loopback")
    try:
        # The same reading of the URL as the connection's (urllib3): what two
        # parsers may read differently is refused, not interpreted.
        return check_server_url(value, where)
    except ConfigError as e:
        raise AgentConfigError(str(e)) from e


def _window(value: str | None) -> MaintenanceWindow | None:
    if value is None:
        return None
    match = _WINDOW_RE.match(value)
    if not match:
        raise AgentConfigError(f"[safety] maintenance_window {value!r} must look like 22:00-06:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    try:
        window = MaintenanceWindow(time(h1, m1), time(h2, m2))
    except ValueError as e:
        raise AgentConfigError(f"[safety] maintenance_window {value!r}: {e}") from e
    if window.start == window.end:
        raise AgentConfigError("[safety] maintenance_window is empty (start equals end)")
    return window


def _status_source(value: str, base: Path) -> tuple[str, Path]:
    kind, _, rest = value.partition(":")
    if kind not in ("file", "socket") or not rest:
        raise AgentConfigError(f"[safety] status {value!r} must be 'file:PATH' or 'socket:PATH'")
    return kind, base / rest


def _booted_slot(value: str, base: Path) -> tuple[str, Path | None]:
    if value == "cmdline":
        return value, None
    kind, _, rest = value.partition(":")
    if kind != "file" or not rest:
        raise AgentConfigError(f"[boot] booted_slot {value!r} must be 'cmdline' or 'file:PATH'")
    return kind, base / rest


def _slot_kind_ok(slot: Path) -> bool:
    try:
        mode = slot.stat().st_mode
    except OSError:
        return True  # created by the first download
    return stat.S_ISREG(mode) or stat.S_ISBLK(mode)


def load_config(path: Path) -> AgentConfig:
    """Read and check the agent configuration file.

    Raises:
        AgentConfigError: The file is unreadable, not TOML, or a value is wrong;
            the message names the key.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise AgentConfigError(f"cannot read agent config {path}: {e.strerror}") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise AgentConfigError(f"agent config {path} is not valid TOML: {e}") from e
    base = path.resolve().parent
    known_sections = {"device", "server", "tuf", "state", "slots", "boot", "selftest",
                      "safety", "agent"}  # fmt: skip
    unknown = sorted(set(data) - known_sections)
    if unknown:
        raise AgentConfigError(f"{path}: unknown section(s): {', '.join(unknown)}")

    device = _Section(
        _table(data, "device"), "device", base, {"id", "product", "hardware_id", "key"}
    )
    device_id = device.text("id")
    # The wire contract's one rule, which the server and the OpenAPI document
    # apply too (tests/pumpguard/test_wire_contract.py).
    if not is_device_id(device_id):
        raise AgentConfigError(f"[device] id {device_id!r} is not a valid device id")
    try:
        product = validate_product(device.text("product"))
        hardware_id = validate_hardware_id(device.text("hardware_id"))
    except ReleaseContractError as e:
        raise AgentConfigError(f"[device] {e}") from e

    srv = _Section(
        _table(data, "server"),
        "server",
        base,
        {"url", "metadata_url", "targets_url", "ca_file", "client_cert", "client_key",
         "timeout", "metadata_deadline", "min_firmware_rate", "poll_interval",
         "max_backoff"},
    )  # fmt: skip
    url = _url(srv.text("url"), "[server] url")
    client_cert, client_key = srv.opt_path("client_cert"), srv.opt_path("client_key")
    if (client_cert is None) != (client_key is None):
        raise AgentConfigError("[server] client_cert and client_key go together")
    server = ServerConfig(
        url=url,
        metadata_url=_url(srv.text("metadata_url", url + "/tuf/metadata"), "[server] metadata_url"),
        targets_url=_url(srv.text("targets_url", url + "/tuf/targets"), "[server] targets_url"),
        ca_file=srv.opt_path("ca_file"),
        client_cert=client_cert,
        client_key=client_key,
        timeout=srv.number("timeout", 30, 0.1, 600),
        metadata_deadline=srv.number("metadata_deadline", 120, 0.1, 3600),
        min_firmware_rate=srv.integer("min_firmware_rate", 16384, MIN_FIRMWARE_RATE, 2**40),
        poll_interval=srv.number("poll_interval", 300, 0.01, 86400),
        max_backoff=srv.number("max_backoff", 3600, 0.01, 7 * 86400),
    )

    tuf = _Section(_table(data, "tuf"), "tuf", base, {"root", "metadata_dir"})
    state = _Section(_table(data, "state", required=False), "state", base, {"dir"})
    state_dir = state.path("dir", "state")

    raw_slots = _table(data, "slots")
    slots: dict[str, Path] = {}
    for name, value in raw_slots.items():
        if not _SLOT_RE.match(name):
            raise AgentConfigError(f"[slots] {name!r} is not a valid slot name ([a-z0-9_]{{1,16}})")
        if not isinstance(value, str) or not value:
            raise AgentConfigError(f"[slots] {name} must be a path")
        slots[name] = base / value
    if len(slots) != 2:
        raise AgentConfigError("[slots] must name exactly two slots (A/B)")
    if len(set(slots.values())) != 2:
        raise AgentConfigError("[slots] the two slots must be different paths")

    boot = _Section(
        _table(data, "boot"),
        "boot",
        base,
        {"backend", "env", "attempts", "booted_slot", "reboot_command"},
    )
    backend = boot.text("backend", "file")
    if backend not in _BACKENDS:
        raise AgentConfigError(f"[boot] backend must be one of {', '.join(_BACKENDS)}")
    booted_kind, booted_file = _booted_slot(boot.text("booted_slot", "cmdline"), base)
    reboot: tuple[str, ...] | None = ("systemctl", "reboot")
    if boot.data.get("reboot_command") == "exit":
        reboot = None
    elif "reboot_command" in boot.data:
        reboot = boot.command("reboot_command")
    boot_config = BootConfig(
        backend=backend,
        env=boot.path("env", str(state_dir / "bootenv")),
        attempts=boot.integer("attempts", 3, 1, MAX_ATTEMPTS),
        booted_slot=booted_kind,
        booted_slot_file=booted_file,
        reboot_command=reboot,
    )

    selftest = _Section(_table(data, "selftest"), "selftest", base, {"command", "timeout"})
    safety = _Section(
        _table(data, "safety"),
        "safety",
        base,
        {"status", "max_status_age", "min_battery_percent", "maintenance_window",
         "therapy_download_rate"},
    )  # fmt: skip
    status_kind, status_path = _status_source(safety.text("status"), base)
    agent = _Section(
        _table(data, "agent", required=False),
        "agent",
        base,
        {"max_state_repeats", "checkpoint_interval"},
    )
    key = device.path("key")
    root = tuf.path("root")
    metadata_dir = tuf.path("metadata_dir", str(state_dir / "tuf"))

    # Every file the configuration names, that an update must never overwrite.
    named: list[tuple[str, Path | None]] = [
        ("the agent config", path),
        ("[device] key", key),
        ("[tuf] root", root),
        ("[boot] env", boot_config.env),
        ("[boot] booted_slot file", booted_file),
        ("[safety] status", status_path),
        ("[server] ca_file", server.ca_file),
        ("[server] client_cert", server.client_cert),
        ("[server] client_key", server.client_key),
    ]
    dirs = (("[state] dir", state_dir), ("[tuf] metadata_dir", metadata_dir))
    uboot_config = boot_config.env if backend == "uboot" else None
    guarded: dict[str, Path] = {}
    for name, slot in slots.items():
        others = [(f"slot {o}", p) for o, p in slots.items() if o != name]
        files = tuple((what, p) for what, p in [*others, *named] if p is not None)
        guard = SlotGuard(files, dirs, uboot_config)
        where = f"[slots] {name} = {str(raw_slots[name])!r}"
        problem = guard.conflict(slot)
        if problem is not None:
            raise AgentConfigError(f"{where} {problem}: every update overwrites the slot")
        if not _slot_kind_ok(slot):
            raise AgentConfigError(f"{where} is neither a regular file nor a block device")
        guarded[name] = SlotPath.guarded(slot, guard)

    return AgentConfig(
        path=path,
        device_id=device_id,
        product=product,
        hardware_id=hardware_id,
        key=key,
        server=server,
        root=root,
        metadata_dir=metadata_dir,
        state_dir=state_dir,
        slots=guarded,
        boot=boot_config,
        selftest_command=selftest.command("command"),
        selftest_timeout=selftest.number("timeout", 120, 1, 3600),
        safety=SafetyConfig(
            status_kind=status_kind,
            status_path=status_path,
            max_status_age=safety.number("max_status_age", 30, 1, MAX_STATUS_AGE),
            min_battery_percent=safety.integer("min_battery_percent", 40, 0, 100),
            maintenance_window=_window(safety.opt_text("maintenance_window")),
            therapy_download_rate=safety.integer("therapy_download_rate", 262144, 1024, 2**40),
        ),
        max_state_repeats=agent.integer("max_state_repeats", 3, 1, 100),
        checkpoint_interval=agent.number("checkpoint_interval", 5, *CHECKPOINT_INTERVAL_RANGE),
    )
