"""What every pumpguard HTTP client shares: safe server URLs and error lines."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pumpguard.errors import ConfigError
from pumpguard.jsonutil import StrictJSONError, loads_strict

__all__ = ["check_server_url", "error_message", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_server_url(server: str, option: str = "--server") -> str:
    """Return ``server`` without a trailing slash if it is safe to send a token to.

    API tokens travel in a header, so plain ``http://`` is accepted only for
    loopback (tests, the single-machine demo); elsewhere TLS is required
    (threat SRV-TOKEN-THEFT).

    Raises:
        ConfigError: Not an http(s) URL, or plain http to another host.
    """
    try:
        parts = urlsplit(server)
        host = parts.hostname
    except ValueError as e:
        raise ConfigError(f"{option} {server!r} is not a URL") from e
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"{option} {server!r} must be an http(s) URL")
    if parts.scheme == "http" and not is_loopback(host):
        raise ConfigError(
            f"{option} {server!r}: use https; the API token would cross the network in clear"
        )
    return server.rstrip("/")


def error_message(data: bytes, reason: str | None = None) -> str:
    """One line explaining an error response: the server's JSON message if any."""
    try:
        message = loads_strict(data)["error"]["message"]
        if isinstance(message, str) and message.strip():
            return " ".join(message.split())
    except (StrictJSONError, KeyError, TypeError):
        pass
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return lines[0][:200] if lines else (reason or "no explanation")
