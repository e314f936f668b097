"""What every pumpguard HTTP client shares: safe server URLs and error lines."""

from __future__ import annotations

import ipaddress
import re

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from pumpguard.errors import ConfigError
from pumpguard.jsonutil import StrictJSONError, loads_strict

__all__ = ["check_server_url", "error_message", "is_loopback"]

# A host name as DNS and /etc/hosts spell it (underscores for container
# service names); IP literals are checked with :mod:`ipaddress` instead.
_HOST_NAME_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_server_url(server: str, option: str = "--server") -> str:
    """Return ``server`` normalised if it is safe to send a token to.

    API tokens travel in a header, so plain ``http://`` is accepted only for
    loopback (tests, the single-machine demo); elsewhere TLS is required
    (threat SRV-TOKEN-THEFT).

    The URL is read once, by the parser that opens the connection
    (:func:`urllib3.util.parse_url`), and the result is
    ``scheme://host[:port][/path]`` rebuilt from that reading, without a
    trailing slash: use it, not ``server``, so that the host checked is the
    host contacted. Anything two URL parsers may read differently is refused
    rather than interpreted: user info (``user@``), backslashes,
    percent-encoding in the host, whitespace, control and non-ASCII
    characters, a query and a fragment. (``http://EVIL\\@127.0.0.1`` is
    ``127.0.0.1`` to :func:`urllib.parse.urlsplit` but ``EVIL`` to urllib3.)

    Raises:
        ConfigError: Not such an http(s) URL, or plain http to another host.
    """
    bad = next((c for c in server if not "!" <= c <= "~" or c == "\\"), None)
    if bad is not None:
        raise ConfigError(
            f"{option} {server!r} must not contain {bad!r}: write the URL in plain ASCII"
            " without spaces or backslashes"
        )
    try:
        url = parse_url(server)
    except LocationParseError as e:
        raise ConfigError(f"{option} {server!r} is not a URL") from e
    if url.scheme not in ("http", "https") or not url.host or "://" not in server:
        raise ConfigError(f"{option} {server!r} must be an http(s) URL")
    if url.auth is not None:
        raise ConfigError(
            f"{option} {server!r} must not contain user info ('...@'): pass the token separately"
        )
    if url.query is not None or url.fragment is not None:
        raise ConfigError(f"{option} {server!r} must not have a query ('?') or fragment ('#')")
    # urllib3 decodes %XX in the host; refused so that no reader has to.
    authority = re.split(r"[/?#]", server.split("://", 1)[1], maxsplit=1)[0]
    if "%" in authority or not _valid_host(url.host):
        raise ConfigError(f"{option} {server!r} does not name a valid host")
    if url.port == 0:
        raise ConfigError(f"{option} {server!r}: port 0 cannot be connected to")
    if url.scheme == "http" and not is_loopback(url.host):
        raise ConfigError(
            f"{option} {server!r}: use https; plain http is allowed only to loopback (elsewhere"
            " an API token or a pump's traffic would cross the network in clear)"
        )
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}{(url.path or '').rstrip('/')}"


def _valid_host(host: str) -> bool:
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host.removeprefix("[").removesuffix("]"))
        except ValueError:
            return False
        return host.endswith("]")
    return _HOST_NAME_RE.fullmatch(host) is not None


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
