"""A simulated pump: slots as files, a bootloader, a therapy controller.

Used by ``make demo``, the end-to-end tests and the power-loss harness. It is
the real agent with only the hardware simulated:

* **Slots** are files; the **boot environment** is the file backend (or GRUB /
  U-Boot environments driven through the real tools).
* **The bootloader** (:meth:`SimulatedPump.power_on`) applies the boot
  selection to the environment, exactly as the GRUB/U-Boot scripts in
  docs/boot-control.md do, and "starts" the chosen image: an image that is not
  a simulator firmware, or one built to crash, fails to boot and the pump power
  cycles again (each try uses up one boot attempt).
* **A reboot** is a restart: in-process the agent raises
  :class:`device_agent.agent.RebootRequested` and the simulator powers on again;
  ``pumpguard agent simulate run`` re-executes itself.
* **The therapy controller** is a status file the simulator (or a test) writes.
  A real controller republishes its status every few seconds and the agent
  treats a status older than ``max_status_age`` (at most a few minutes) as
  unknown; the simulated one republishes its last status, with a fresh time,
  at every power-on (:meth:`SimulatedPump.power_on`), and
  ``pumpguard agent simulate therapy`` publishes a new one.

Simulator firmware images start with a one-line header saying their version
and how they behave (``ok``, ``selftest-fail``, ``crash``); the self-test
(``pumpguard agent simulate selftest``) reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device_agent import _durable
from device_agent.bootctl import make_boot_control
from device_agent.config import MAX_STATUS_AGE, AgentConfig, load_config
from device_agent.errors import AgentError
from device_agent.state import CounterStore, SlotImage, SlotRecords

__all__ = [
    "BEHAVIOURS",
    "SimulatedPump",
    "build_sim_firmware",
    "read_sim_header",
    "selftest_image",
]

logger = logging.getLogger(__name__)

MAGIC = b"PUMPGUARD-SIM-FIRMWARE-1 "
BEHAVIOURS = ("ok", "selftest-fail", "crash")
_HEADER_MAX = 512


def build_sim_firmware(version: str, behaviour: str = "ok", size: int = 64 * 1024) -> bytes:
    """A simulator firmware image of ``size`` bytes.

    Args:
        version: The version the image claims.
        behaviour: ``ok``; ``selftest-fail`` (boots, fails its self-test);
            ``crash`` (never finishes booting).
        size: Total length; the body is a deterministic pattern.
    """
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"behaviour must be one of {', '.join(BEHAVIOURS)}")
    header = MAGIC + json.dumps({"version": version, "behaviour": behaviour}).encode() + b"\n"
    if size < len(header):
        raise ValueError(f"size must be at least {len(header)} bytes")
    block = hashlib.sha256(f"{version}/{behaviour}".encode()).digest() * 2048
    body = bytearray()
    while len(body) < size - len(header):
        body += block
    return header + bytes(body[: size - len(header)])


def read_sim_header(path: Path) -> dict[str, Any] | None:
    """The header of the simulator image in ``path``, or None if it has none."""
    try:
        with path.open("rb") as f:
            head = f.read(_HEADER_MAX)
    except OSError:
        return None
    if not head.startswith(MAGIC) or b"\n" not in head:
        return None
    try:
        doc = json.loads(head[len(MAGIC) : head.index(b"\n")])
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("behaviour") not in BEHAVIOURS:
        return None
    return doc


@dataclass
class SimulatedPump:
    """A simulated pump living in one folder (``agent.toml`` and its files)."""

    dir: Path

    @property
    def config_path(self) -> Path:
        """The agent configuration file."""
        return self.dir / "agent.toml"

    def config(self) -> AgentConfig:
        """The loaded agent configuration."""
        return load_config(self.config_path)

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        server_url: str,
        root: bytes,
        device_id: str,
        product: str,
        hardware_id: str,
        key_pem: bytes,
        factory_version: str = "1.0.0",
        factory_counter: int = 0,
        factory_size: int = 64 * 1024,
        backend: str = "file",
        maintenance_window: str | None = None,
    ) -> SimulatedPump:
        """Provision a pump: config, key, trusted root, factory image in slot a.

        Args:
            directory: An empty (or absent) folder.
            server_url: The update server (http only on loopback).
            root: The trusted root.json shipped with the pump.
            device_id: Its enrolled id.
            product: Its product line.
            hardware_id: Its hardware revision.
            key_pem: Its Ed25519 private key (PKCS#8 PEM).
            factory_version: Version of the factory image.
            factory_counter: The anti-rollback counter set at manufacturing.
            factory_size: Size of the factory image.
            backend: Boot-control backend (``file``, ``grub``, ``uboot``).
            maintenance_window: Optional ``HH:MM-HH:MM``.
        """
        directory.mkdir(parents=True, exist_ok=True)
        if (directory / "agent.toml").exists():
            raise AgentError(f"{directory} already holds a simulated pump")
        for sub in ("slots", "state"):
            (directory / sub).mkdir(exist_ok=True)
        _durable.atomic_write(directory / "device.key", key_pem, "device key", mode=0o600)
        _durable.atomic_write(directory / "root.json", root, "root", mode=0o644)
        env = {"file": "state/bootenv", "grub": "state/grubenv", "uboot": "fw_env.config"}
        selftest = [sys.executable, "-m", "pumpguard", "agent", "simulate", "selftest",
                    "--image", "{slot_path}"]  # fmt: skip
        window = f'maintenance_window = "{maintenance_window}"\n' if maintenance_window else ""
        config = f"""\
# A simulated pump (pumpguard agent simulate).
[device]
id = "{device_id}"
product = "{product}"
hardware_id = "{hardware_id}"
key = "device.key"

[server]
url = "{server_url}"
timeout = 10
metadata_deadline = 30
poll_interval = 60
max_backoff = 300

[tuf]
root = "root.json"
metadata_dir = "state/tuf"

[state]
dir = "state"

[slots]
a = "slots/a.img"
b = "slots/b.img"

[boot]
backend = "{backend}"
env = "{env[backend]}"
attempts = 3
booted_slot = "file:state/booted"
reboot_command = "exit"

[selftest]
command = {json.dumps(selftest)}
timeout = 60

[safety]
status = "file:pump-status.json"
max_status_age = {MAX_STATUS_AGE}
min_battery_percent = 30
therapy_download_rate = 4194304
{window}
[agent]
max_state_repeats = 3
"""
        _durable.atomic_write(directory / "agent.toml", config.encode(), "config", mode=0o644)
        pump = cls(directory)
        cfg = pump.config()
        if backend == "uboot":
            _write_uboot_config(directory)
        image = build_sim_firmware(factory_version, "ok", factory_size)
        _durable.atomic_write(cfg.slots["a"], image, "factory image", mode=0o644)
        _durable.atomic_write(cfg.slots["b"], b"", "empty slot", mode=0o644)
        make_boot_control(cfg.boot.backend, env=cfg.boot.env, slots=tuple(cfg.slots)).initialize(
            "a"
        )
        SlotRecords(cfg.state_dir).set(
            "a",
            SlotImage(
                version=factory_version,
                release_counter=factory_counter,
                length=len(image),
                sha256=hashlib.sha256(image).hexdigest(),
                path=f"{product}/{factory_version}/firmware.img",
            ),
        )
        CounterStore(cfg.state_dir).raise_to(factory_counter)
        pump.set_status()
        return pump

    def set_status(
        self, therapy: str = "idle", on_mains: bool = True, battery_percent: int = 100
    ) -> None:
        """Play the therapy controller: publish the pump's status."""
        self._publish_status(self.config(), therapy, on_mains, battery_percent)

    def _republish_status(self, cfg: AgentConfig) -> None:
        """The therapy controller starts with the pump: its last status, fresh.

        A missing or unreadable status file is left as it is (the agent must
        keep seeing it as unavailable), and so is a socket status source.
        The controller is a program other than the agent: its writes are not
        crash points of the power-loss harness.
        """
        if cfg.safety.status_kind != "file":
            return
        try:
            doc = json.loads(cfg.safety.status_path.read_bytes())
        except (OSError, ValueError):
            return
        if not isinstance(doc, dict):
            return
        therapy, on_mains, battery = (
            doc.get("therapy"),
            doc.get("on_mains"),
            doc.get("battery_percent"),
        )
        if not (
            isinstance(therapy, str) and isinstance(on_mains, bool) and isinstance(battery, int)
        ):
            return
        with _durable.crash_hook(None):
            self._publish_status(cfg, therapy, on_mains, battery)

    @staticmethod
    def _publish_status(
        cfg: AgentConfig, therapy: str, on_mains: bool, battery_percent: int
    ) -> None:
        status = {
            "therapy": therapy,
            "on_mains": on_mains,
            "battery_percent": battery_percent,
            "updated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        path = cfg.safety.status_path
        _durable.atomic_write(path, json.dumps(status).encode(), "pump status", mode=0o644)

    def power_on(self, max_tries: int = 10) -> str:
        """Run the bootloader until an image starts; returns the booted slot.

        Raises:
            AgentError: No slot boots at all (the pump is bricked: the
                invariant this whole package exists to prevent).
        """
        cfg = self.config()
        self._republish_status(cfg)
        boot = make_boot_control(cfg.boot.backend, env=cfg.boot.env, slots=tuple(cfg.slots))
        for _ in range(max_tries):
            slot = boot.boot()
            header = read_sim_header(cfg.slots[slot])
            if header is None or header["behaviour"] == "crash":
                logger.warning("slot %s failed to boot; power cycling", slot)
                continue
            if cfg.boot.booted_slot_file is None:
                raise AgentError("the simulator needs booted_slot = 'file:...'")
            _durable.atomic_write(
                cfg.boot.booted_slot_file, slot.encode(), "booted slot", mode=0o644
            )
            logger.info("booted slot %s (%s)", slot, header["version"])
            return slot
        raise AgentError(f"no slot of {self.dir} boots after {max_tries} tries")

    def booted_image(self) -> tuple[str, bytes]:
        """The slot the pump runs and that slot's bytes (for invariant checks)."""
        cfg = self.config()
        if cfg.boot.booted_slot_file is None:
            raise AgentError("the simulator needs booted_slot = 'file:...'")
        slot = cfg.boot.booted_slot_file.read_text().strip()
        return slot, cfg.slots[slot].read_bytes()


def _write_uboot_config(directory: Path) -> None:
    config = (
        f"{directory / 'state' / 'uboot-env.0'} 0x0 0x4000\n"
        f"{directory / 'state' / 'uboot-env.1'} 0x0 0x4000\n"
    )
    _durable.atomic_write(directory / "fw_env.config", config.encode(), "uboot config", 0o644)


def selftest_image(path: Path) -> tuple[bool, str]:
    """The simulator's self-test: does the image in ``path`` pass?"""
    header = read_sim_header(path)
    if header is None:
        return False, f"{path} is not a simulator firmware image"
    if header["behaviour"] != "ok":
        return False, f"image {header.get('version')} is built to fail ({header['behaviour']})"
    return True, f"image {header.get('version')} passed"
