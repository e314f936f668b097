"""Server configuration: ``DATA/server.toml`` overridden by ``PUMPGUARD_*`` env vars."""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pumpguard.errors import ConfigError

__all__ = ["CONFIG_NAME", "ServerConfig", "load_config"]

CONFIG_NAME = "server.toml"

#: Longest refresh_interval (s): a day, the default lifetime of timestamp.json;
#: a scheduler ticking less often cannot keep it fresh (with the default
#: policy, at most its 12 h refresh window keeps it fresh). Far below the
#: longest wait :mod:`threading` takes (``threading.TIMEOUT_MAX``).
MAX_REFRESH_INTERVAL = 86400.0

# Largest value of each integer setting, and why:
_INT_LIMITS = {
    # A day: pumps clamp the interval they are told to at most 86400 s.
    "poll_interval": 86400,
    # 64 GiB: firmware bundles are megabytes; the default is 2 GiB and a
    # larger limit is no limit on the upload spool in the data folder.
    "max_bundle_bytes": 64 << 30,
    # A day: the replay window (nonces are kept 2 * clock_skew); beyond it a
    # captured request stays replayable for days and the nonce table grows.
    "clock_skew": 86400,
    # Worker threads of `server run`: each may hold a database connection
    # from each pool and a file; more than this is no bound (threat SRV-DOS).
    "threads": 256,
    # Client connections `server run` keeps open; at run time also kept
    # below the open-file limit (update_server.serve).
    "connection_limit": 100_000,
    # Request bodies over 256 KiB (release uploads) received at once: each
    # is spooled to disk before the app sees it, so this bounds the spool.
    "max_large_bodies": 64,
    # Connections of each of a process's two database pools; PostgreSQL's
    # max_connections must cover them for every worker.
    "db_pool_size": 1000,
}

# Lowest (exclusive) and highest value of each duration setting (seconds).
# Zero would close every connection at once; above an hour a timeout is no
# bound on a slow client (threat SRV-DOS). A pool wait longer than a minute
# is a hang to the client.
_SECONDS_LIMITS = {
    "header_timeout": 3600.0,
    "body_timeout": 3600.0,
    "send_timeout": 3600.0,
    "db_pool_timeout": 60.0,
}


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs to run.

    Attributes:
        data_dir: The server's data folder (repository, database, keys).
        database_url: SQLAlchemy URL; SQLite in the data folder by default,
            PostgreSQL in production (``DATABASE_URL``).
        snapshot_key: Online snapshot key: a key file (relative to
            ``data_dir``) or a PKCS#11 URI.
        timestamp_key: Online timestamp key, likewise.
        passphrase_env: Env var holding the online key files' passphrase.
        poll_interval: Seconds a pump waits between check-ins.
        refresh_interval: Seconds between the scheduler's freshness checks of
            snapshot and timestamp (0 disables the in-process scheduler).
        max_bundle_bytes: Largest release bundle accepted.
        clock_skew: Seconds a signed device request's timestamp may differ
            from the server's clock.
        public_url: Base URL pumps use for /tuf (documentation only).
        threads: Worker threads of ``pumpguard server run``.
        connection_limit: Client connections ``server run`` keeps open; at
            the limit it drops the oldest connection that has not sent a
            whole request (also kept below the open-file limit).
        header_timeout: Seconds a client of ``server run`` has to send a
            whole request head, from its connection or its previous answer
            (408 and closed after).
        body_timeout: Seconds a request body may take; an upload's, one
            second more per 500 bytes received (408 and closed after).
        send_timeout: Seconds ``server run`` waits for a client that stopped
            reading its answer before closing the connection.
        max_large_bodies: Request bodies over 256 KiB (release uploads) that
            ``server run`` receives at once; more get 503 and Retry-After.
        db_pool_size: Database connections of each of a process's two pools
            (the requests' sessions, and the check-ins').
        db_pool_timeout: Seconds a request waits for a pooled connection
            before it is answered 503 with Retry-After.
    """

    data_dir: Path
    database_url: str = ""
    snapshot_key: str = "keys/snapshot.key"
    timestamp_key: str = "keys/timestamp.key"
    # The name of the variable holding the passphrase, not a passphrase.
    passphrase_env: str = "PUMPGUARD_PASSPHRASE"  # noqa: S105
    poll_interval: int = 60
    refresh_interval: float = 300.0
    max_bundle_bytes: int = 2 << 30
    clock_skew: int = 300
    public_url: str = ""
    threads: int = 8
    connection_limit: int = 1000
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    send_timeout: float = 60.0
    max_large_bodies: int = 2
    db_pool_size: int = 10
    db_pool_timeout: float = 2.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'server.db'}")
        for name, most in _INT_LIMITS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, not {value!r}")
            if value > most:
                raise ConfigError(f"{name} must be at most {most}, not {value!r}")
        value = self.refresh_interval
        # NaN would silently stop the scheduler (every comparison with it is
        # false) and inf would kill its thread (Event.wait overflows).
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or not 0 <= value <= MAX_REFRESH_INTERVAL
        ):
            raise ConfigError(
                f"refresh_interval must be a number of seconds from 0 to {MAX_REFRESH_INTERVAL:g},"
                f" not {value!r}"
            )
        for name, most_seconds in _SECONDS_LIMITS.items():
            value = getattr(self, name)
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not math.isfinite(value)
                or not 0 < value <= most_seconds
            ):
                raise ConfigError(
                    f"{name} must be a number of seconds above 0 and at most {most_seconds:g},"
                    f" not {value!r}"
                )

    @property
    def repo_dir(self) -> Path:
        """The TUF repository the server publishes into."""
        return self.data_dir / "repo"

    def key_spec(self, spec: str) -> str:
        """A key spec with file paths resolved against the data folder."""
        if spec.startswith(("pkcs11:", "hsm:")):
            return spec
        path = Path(spec)
        return str(path if path.is_absolute() else self.data_dir / path)


_ENV_FIELDS = {
    "database_url": str,
    "snapshot_key": str,
    "timestamp_key": str,
    "passphrase_env": str,
    "poll_interval": int,
    "refresh_interval": float,
    "max_bundle_bytes": int,
    "clock_skew": int,
    "public_url": str,
    "threads": int,
    "connection_limit": int,
    "header_timeout": float,
    "body_timeout": float,
    "send_timeout": float,
    "max_large_bodies": int,
    "db_pool_size": int,
    "db_pool_timeout": float,
}


def load_config(data_dir: Path, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Load ``DATA/server.toml``, then apply ``PUMPGUARD_<FIELD>`` env overrides.

    ``DATABASE_URL`` is honoured too (the usual name on hosting platforms).

    Raises:
        ConfigError: The file is not valid TOML, names unknown settings, or a
            value has the wrong type.
    """
    environ = os.environ if environ is None else environ
    path = data_dir / CONFIG_NAME
    values: dict[str, Any] = {}
    if path.exists():
        try:
            values = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: {e}") from e
    known = {f.name for f in fields(ServerConfig)} - {"data_dir", "extra"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    if environ.get("DATABASE_URL"):
        values["database_url"] = environ["DATABASE_URL"]
    for name, kind in _ENV_FIELDS.items():
        raw = environ.get(f"PUMPGUARD_{name.upper()}")
        if raw is not None:
            try:
                values[name] = kind(raw)
            except ValueError as e:
                what = "an integer" if kind is int else "a number" if kind is float else "text"
                raise ConfigError(f"PUMPGUARD_{name.upper()}={raw!r} is not {what}") from e
    try:
        return ServerConfig(data_dir=data_dir, **values)
    except TypeError as e:
        raise ConfigError(f"{path}: {e}") from e


def with_overrides(config: ServerConfig, **changes: Any) -> ServerConfig:
    """A copy of ``config`` with some settings changed (tests, CLI flags)."""
    return replace(config, **changes)
