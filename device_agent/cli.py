"""``pumpguard agent``: run the pump agent, inspect it, or simulate a pump.

Exit codes: 0 success; 1 an operation failed (server unreachable, slot or
boot-environment error); 2 bad configuration or usage; 4 an update was refused
by verification (details on stderr and in the report to the server).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_agent.agent import Agent, RebootRequested, StepResult
from device_agent.config import load_config
from device_agent.errors import AgentConfigError
from device_agent.simulator import BEHAVIOURS, SimulatedPump, build_sim_firmware, selftest_image
from device_agent.state import AgentState
from pumpguard.fsutil import atomic_write_bytes

__all__ = ["agent"]

logger = logging.getLogger(__name__)

_CONFIG = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The agent's TOML configuration file.",
)
_DIR = click.option(
    "--dir",
    "pump_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The simulated pump's folder.",
)


def _progress_bar(enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TransferSpeedColumn,
    )

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        transient=True,
    )


def _describe(agent_: Agent) -> dict[str, Any]:
    record = agent_.store.load()
    env = agent_.boot.read()
    decision = agent_.safety()
    return {
        "device_id": agent_.config.device_id,
        "state": str(record.state),
        "deferred": record.deferred,
        "update": None
        if record.update is None
        else {
            "path": record.update.path,
            "version": record.update.version,
            "slot": record.update.slot,
            "downloaded": record.update.downloaded,
            "length": record.update.length,
        },
        "last_outcome": None if record.outcome is None else record.outcome.__dict__,
        "anti_rollback_counter": agent_.counter.read(),
        "boot": {
            "committed": env.committed,
            "trial": env.trial,
            "attempts_left": env.attempts_left,
        },
        "slots": agent_.report(record)["slots"],
        "safe_to_install": {"safe": decision.safe, "reason": decision.reason},
        "queued_events": len(agent_.outbox.pending()),
    }


def _print(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    update = doc.get("update")
    click.echo(
        f"{doc['device_id']}: {doc['state']}"
        + (f" ({doc['deferred']})" if doc.get("deferred") else "")
    )
    if update:
        click.echo(f"  update {update['version']} -> slot {update['slot']}")
    outcome = doc.get("last_outcome")
    if outcome:
        reason = f" ({outcome['reason']})" if outcome.get("reason") else ""
        click.echo(f"  last update: {outcome['version']} {outcome['result']}{reason}")
    boot = doc["boot"]
    click.echo(f"  committed slot {boot['committed']}, trial {boot['trial'] or '-'}")
    for name, slot in doc["slots"].items():
        click.echo(f"  slot {name}: {slot['state']} {slot.get('version', '')}".rstrip())
    click.echo(f"  anti-rollback counter {doc['anti_rollback_counter']}")


@click.group()
def agent() -> None:
    """Run the pump agent, inspect it, or simulate a pump."""


@agent.command()
@_CONFIG
@click.option("--once", is_flag=True, help="Run one poll cycle and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the final state as JSON.")
def run(config_path: Path, once: bool, as_json: bool) -> None:
    """Run the agent: poll, verify, install, self-test, commit or roll back.

    Runs until stopped (SIGTERM) unless --once is given.
    """
    config = load_config(config_path)
    bar = _progress_bar(sys.stderr.isatty() and not as_json)
    agent_ = _make_agent(config, bar)
    try:
        if once:
            agent_.run_cycle()
        else:
            agent_.run_forever()
    except RebootRequested:
        # reboot_command = "exit": whoever runs the agent reboots the system
        # (or, in a simulation, the process) and starts it again.
        click.echo("reboot requested; start the agent again after the reboot", err=True)
        return
    finally:
        if bar is not None:
            bar.stop()
    if once:
        _print(_describe(agent_), as_json)


def _make_agent(config: Any, bar: Any) -> Agent:
    progress = None
    if bar is not None:
        bar.start()
        task = bar.add_task("firmware", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

    return Agent(config, progress=progress)


@agent.command()
@_CONFIG
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def status(config_path: Path, as_json: bool) -> None:
    """Show the agent's state, boot environment, slots and interlock."""
    _print(_describe(Agent(load_config(config_path))), as_json)


# ---------------------------------------------------------------- simulator


@agent.group()
def simulate() -> None:
    """A simulated pump: slots as files, a bootloader, a therapy controller."""


@simulate.command("init")
@_DIR
@click.option("--server", required=True, help="Update server URL.")
@click.option(
    "--root",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="The trusted root.json the pump ships with.",
)
@click.option("--device-id", required=True, help="The pump's device id.")
@click.option("--product", required=True, help="Product line.")
@click.option("--hardware-id", required=True, help="Hardware revision.")
@click.option(
    "--key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Ed25519 device key (PEM). Default: make one; its public half goes to device.pub.",
)
@click.option("--factory-version", default="1.0.0", show_default=True)
@click.option("--factory-counter", default=0, show_default=True, type=click.IntRange(0))
@click.option(
    "--backend", type=click.Choice(["file", "grub", "uboot"]), default="file", show_default=True
)
@click.option("--window", help="Maintenance window HH:MM-HH:MM (default: any time).")
def simulate_init(
    pump_dir: Path,
    server: str,
    root: Path,
    device_id: str,
    product: str,
    hardware_id: str,
    key: Path | None,
    factory_version: str,
    factory_counter: int,
    backend: str,
    window: str | None,
) -> None:
    """Provision a simulated pump with a factory image in slot a."""
    if key is not None:
        key_pem = key.read_bytes()
    else:
        private = Ed25519PrivateKey.generate()
        key_pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public_hex = private.public_key().public_bytes_raw().hex()
        pump_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(pump_dir / "device.pub", (public_hex + "\n").encode())
    SimulatedPump.create(
        pump_dir,
        server_url=server,
        root=root.read_bytes(),
        device_id=device_id,
        product=product,
        hardware_id=hardware_id,
        key_pem=key_pem,
        factory_version=factory_version,
        factory_counter=factory_counter,
        backend=backend,
        maintenance_window=window,
    )
    click.echo(f"simulated pump {device_id} in {pump_dir}")


@simulate.command("run")
@_DIR
@click.option(
    "--wait-timeout",
    type=click.FloatRange(0),
    default=None,
    help="Stop after waiting this long in a deferred state (default: wait on).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the final state as JSON.")
def simulate_run(pump_dir: Path, wait_timeout: float | None, as_json: bool) -> None:
    """Power the pump on and run the agent until it is idle after a check-in.

    A reboot restarts this process (the simulated bootloader runs at start).
    """
    pump = SimulatedPump(pump_dir)
    pump.power_on()
    agent_ = Agent(pump.config())
    waited = 0.0
    checked = False
    try:
        while True:
            state = agent_.store.load().state
            checked = checked or state is AgentState.CHECKING
            result = agent_.step()
            if result is StepResult.IDLE and checked:
                break
            if result is StepResult.WAIT:
                if wait_timeout is not None and waited >= wait_timeout:
                    break
                time.sleep(0.2)
                waited += 0.2
    except RebootRequested:
        # A reboot is a restart of the process: the new one powers on first.
        sys.stdout.flush()
        argv = [sys.executable, "-m", "pumpguard", *sys.argv[1:]]
        # Bandit B606: re-executes this very command line (a simulated reboot).
        os.execv(sys.executable, argv)  # noqa: S606  # nosec B606
    _print(_describe(agent_), as_json)


@simulate.command("therapy")
@_DIR
@click.argument("state", type=click.Choice(["idle", "running", "programmed"]))
@click.option("--battery", type=click.IntRange(0, 100), default=100, show_default=True)
@click.option("--on-battery", is_flag=True, help="Off mains power.")
def simulate_therapy(pump_dir: Path, state: str, battery: int, on_battery: bool) -> None:
    """Play the therapy controller: set the infusion state and power."""
    SimulatedPump(pump_dir).set_status(state, not on_battery, battery)
    click.echo(f"therapy {state}, {'battery' if on_battery else 'mains'} {battery}%")


@simulate.command("selftest")
@click.option(
    "--image",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The slot image to test.",
)
def simulate_selftest(image: Path) -> None:
    """The simulator's self-test: exit 0 if the image's marker says it works."""
    ok, message = selftest_image(image)
    click.echo(message, err=not ok)
    if not ok:
        sys.exit(1)


@simulate.command("firmware")
@click.option("--version", "version", required=True, help="Version the image claims.")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output file."
)
@click.option("--behaviour", type=click.Choice(BEHAVIOURS), default="ok", show_default=True)
@click.option("--size", type=click.IntRange(1024), default=64 * 1024, show_default=True)
def simulate_firmware(version: str, out: Path, behaviour: str, size: int) -> None:
    """Build a simulator firmware image (to sign into a release)."""
    try:
        image = build_sim_firmware(version, behaviour, size)
    except ValueError as e:
        raise AgentConfigError(str(e)) from e
    atomic_write_bytes(out, image)
    click.echo(f"wrote {out} ({len(image)} bytes, {behaviour})")
