"""``pumpguard device``: enroll pumps with the update server, make device keys.

``enroll`` talks to a running server over HTTP(S) with an admin or operator API
token taken from an environment variable (never from the command line, where
other users could read it in the process list). ``keygen`` writes the key pair
a pump (or the simulator) signs its requests with.

This is the operator's client, so it lives here and not in ``update_server``:
it runs on a base install (``pip install pumpguard``, no server extra) and
needs only click, urllib3 and cryptography. It checks that a public key is
well-formed (64 hex digits or an Ed25519 PEM) so that a wrong file fails before
any request; whether the key is acceptable to enroll is the server's decision
alone (it validates every enrollment whatever the client did), so the client
does not repeat the server's checks nor pull in their dependencies.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import click
import urllib3
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from pumpguard.errors import ConfigError, PumpguardError
from pumpguard.fsutil import FileTooLargeError, atomic_write_bytes, read_capped
from pumpguard.http import check_server_url, error_message

__all__ = [
    "DeviceCliError",
    "EnrollRefusedError",
    "device",
    "enroll_device",
    "generate_device_key",
    "read_public_key",
]

# fullmatch, ASCII: "$" would accept a trailing newline.
_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)
_MAX_KEY_FILE = 16 * 1024


class DeviceCliError(PumpguardError):
    """A ``pumpguard device`` operation failed (server unreachable, key files)."""


class EnrollRefusedError(DeviceCliError):
    """The server answered an enrollment with an HTTP error.

    Attributes:
        status: The HTTP status code.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def read_public_key(value: str) -> str:
    """A device public key as 64 lower-case hex digits.

    Args:
        value: 64 hex digits, or a file holding them (``NAME.pub`` from
            ``keygen``) or an Ed25519 public key in PEM.

    Raises:
        ConfigError: ``value`` is none of these.
    """
    if _HEX64_RE.fullmatch(value):
        return value.lower()
    path = Path(value)
    try:
        data = read_capped(path, _MAX_KEY_FILE)
    except FileTooLargeError as e:
        raise ConfigError(f"{path} is too large to be a public key ({e})") from e
    except OSError as e:
        raise ConfigError(
            f"--public-key {value!r} is neither 64 hex digits nor a readable file: {e.strerror}"
        ) from e
    text = data.decode("ascii", errors="replace").strip()
    if _HEX64_RE.fullmatch(text):
        return text.lower()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise ConfigError(f"{path} holds neither 64 hex digits nor a PEM public key") from e
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} is not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def enroll_device(
    server: str,
    token: str,
    *,
    device_id: str,
    hardware_id: str,
    product: str,
    public_key: str,
    http: urllib3.PoolManager | None = None,
) -> dict[str, Any]:
    """Enroll a pump through ``POST /api/v1/devices``.

    Args:
        server: The server's base URL (https, or http to loopback).
        token: An admin or operator API token.
        device_id: The pump's device id.
        hardware_id: The pump's hardware revision.
        product: The product the pump runs.
        public_key: The pump's raw Ed25519 public key, 64 hex digits.
        http: A pool manager to reuse; one with timeouts by default.

    Returns:
        The enrolled device as the server shows it.

    Raises:
        ConfigError: ``server`` is not an acceptable URL.
        DeviceCliError: The server cannot be reached.
        EnrollRefusedError: The server refused (the message says why).
    """
    base = check_server_url(server)
    http = http or urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=10.0, read=30.0), retries=False
    )
    payload = {
        "device_id": device_id,
        "hardware_id": hardware_id,
        "product": product,
        "public_key": public_key,
    }
    try:
        response = http.request(
            "POST",
            f"{base}/api/v1/devices",
            body=json.dumps(payload).encode(),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
    except urllib3.exceptions.HTTPError as e:
        raise DeviceCliError(f"cannot reach {base}: {e}") from e
    if response.status != 201:
        raise EnrollRefusedError(
            f"the server refused to enroll {device_id!r} (HTTP {response.status}): "
            f"{error_message(response.data, response.reason)}",
            response.status,
        )
    try:
        result: dict[str, Any] = json.loads(response.data)
    except ValueError as e:
        raise DeviceCliError(f"{base} answered the enrollment with invalid JSON") from e
    return result


def generate_device_key(out: Path, *, force: bool = False) -> tuple[Path, Path, str]:
    """Write a device key pair: ``OUT.key`` (private) and ``OUT.pub`` (public).

    The private key is unencrypted PKCS#8 PEM, mode 0600: a pump has nobody to
    type a passphrase, so the file's protection is the device's storage. The
    public key file holds the raw key as 64 hex digits and a newline, the form
    enrollment takes.

    Args:
        out: ``DIR/NAME``; the directory is created if needed.
        force: Replace an existing key pair.

    Returns:
        The private key path, the public key path and the public key (hex).

    Raises:
        DeviceCliError: A key file exists and ``force`` is not set.
    """
    private_path = out.with_name(out.name + ".key")
    public_path = out.with_name(out.name + ".pub")
    for path in (private_path, public_path):
        if path.exists() and not force:
            raise DeviceCliError(f"{path} exists; pass --force to replace the key pair")
    out.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_hex = (
        key.public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        .hex()
    )
    atomic_write_bytes(private_path, pem, mode=0o600)
    atomic_write_bytes(public_path, f"{public_hex}\n".encode())
    return private_path, public_path, public_hex


@click.group()
def device() -> None:
    """Enroll pumps with the update server and make device keys."""


@device.command()
@click.option("--server", required=True, help="Base URL of the update server.")
@click.option("--device-id", required=True, help="The pump's device id.")
@click.option("--hardware-id", required=True, help="The pump's hardware revision.")
@click.option("--product", required=True, help="The product the pump runs.")
@click.option(
    "--public-key",
    required=True,
    metavar="FILE_OR_HEX",
    help="64 hex digits, or a file with them (NAME.pub) or a PEM public key.",
)
@click.option(
    "--token-env",
    default="PUMPGUARD_TOKEN",
    show_default=True,
    help="Environment variable holding an admin or operator API token.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the enrolled device as JSON.")
def enroll(
    server: str,
    device_id: str,
    hardware_id: str,
    product: str,
    public_key: str,
    token_env: str,
    as_json: bool,
) -> None:
    """Enroll a pump with the update server."""
    token = os.environ.get(token_env, "").strip()
    if not token:
        raise ConfigError(f"set {token_env} to an admin or operator API token")
    result = enroll_device(
        server,
        token,
        device_id=device_id,
        hardware_id=hardware_id,
        product=product,
        public_key=read_public_key(public_key),
    )
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"enrolled {device_id} ({product}, hardware {hardware_id})")


@device.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="DIR/NAME",
    help="Writes NAME.key (private, mode 0600) and NAME.pub (64 hex digits).",
)
@click.option("--force", is_flag=True, help="Replace an existing key pair.")
@click.option("--json", "as_json", is_flag=True, help="Print the paths and key as JSON.")
def keygen(out: Path, force: bool, as_json: bool) -> None:
    """Generate a pump's Ed25519 device key pair."""
    private_path, public_path, public_hex = generate_device_key(out, force=force)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "private_key_file": str(private_path),
                    "public_key_file": str(public_path),
                    "public_key": public_hex,
                }
            )
        )
    else:
        click.echo(f"wrote {private_path} (private, keep on the pump) and {public_path}")
        click.echo(public_hex)
