"""``pumpguard server``: create, run and administer an update server.

The commands import the server (Flask, SQLAlchemy, the database drivers) when
they run, not when this module is imported, so ``pumpguard server ... --help``
works on a base install; running one without the server extra fails with the
``pip install 'pumpguard[server]'`` hint (:func:`pumpguard.cli.main`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pumpguard.errors import ConfigError
from pumpguard.fsutil import atomic_write_bytes
from update_server.config import ServerConfig, load_config
from update_server.roles import ROLES

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["server"]


def _data_option(f: Any) -> Any:
    return click.option(
        "--data",
        "data_dir",
        required=True,
        envvar="PUMPGUARD_DATA",
        type=click.Path(file_okay=False, path_type=Path),
        help="Server data folder (env PUMPGUARD_DATA).",
    )(f)


def _config(data_dir: Path) -> ServerConfig:
    if not (data_dir / "server.toml").exists():
        raise ConfigError(f"{data_dir} is not a server data folder (run `pumpguard server init`)")
    return load_config(data_dir)


@contextmanager
def _session(config: ServerConfig) -> Iterator[Session]:
    from sqlalchemy.orm import sessionmaker

    from update_server.db import engine_for
    from update_server.errors import ApiError

    engine = engine_for(config.database_url)
    try:
        with sessionmaker(engine).begin() as session:
            yield session
    except ApiError as e:
        # Validation errors of the API are plain usage errors on the command line.
        raise ConfigError(str(e)) from e
    finally:
        engine.dispose()


def _write_secret(path: Path, secret: str) -> None:
    if path.exists():
        raise ConfigError(f"{path} exists; refusing to overwrite a token file")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, secret.encode() + b"\n", mode=0o600)


@click.group()
def server() -> None:
    """Create, run and administer the update server."""


@server.command("init")
@_data_option
@click.option(
    "--repo",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Repository made by `pumpguard repo init`.",
)
@click.option(
    "--snapshot-key", required=True, metavar="KEY", help="Online snapshot key file or PKCS#11 URI."
)
@click.option(
    "--timestamp-key",
    required=True,
    metavar="KEY",
    help="Online timestamp key file or PKCS#11 URI.",
)
@click.option("--database-url", help="SQLAlchemy URL (default: SQLite in the data folder).")
@click.option(
    "--passphrase-env",
    default="PUMPGUARD_PASSPHRASE",
    show_default=True,
    help="Env var with the online keys' passphrase.",
)
@click.option(
    "--admin-token-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the first admin token (default DATA/admin.token, mode 0600).",
)
@click.option("--json", "as_json", is_flag=True)
def server_init(
    data_dir: Path,
    repo: Path,
    snapshot_key: str,
    timestamp_key: str,
    database_url: str | None,
    passphrase_env: str,
    admin_token_out: Path | None,
    as_json: bool,
) -> None:
    """Create a server data folder: repository copy, online keys, database, admin token.

    The admin token is written to a file readable only by you; it is never printed.
    """
    from update_server.datadir import init_data_dir

    token_path = admin_token_out or data_dir / "admin.token"
    if token_path.exists():
        raise ConfigError(f"{token_path} exists; refusing to overwrite a token file")
    config, secret = init_data_dir(
        data_dir,
        repo=repo,
        snapshot_key=snapshot_key,
        timestamp_key=timestamp_key,
        database_url=database_url,
        passphrase_env=passphrase_env,
    )
    _write_secret(token_path, secret)
    out = {
        "data": str(data_dir),
        "admin_token_file": str(token_path),
        "database": config.database_url.split("@")[-1],
    }
    click.echo(
        json.dumps(out)
        if as_json
        else f"server data folder {data_dir} ready; admin token in {token_path}"
    )


@server.command("run")
@_data_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--threads", type=int, help="Worker threads (setting threads; default 8).")
@click.option(
    "--connection-limit",
    type=int,
    help="Client connections kept open (setting connection_limit; default 1000).",
)
@click.option(
    "--header-timeout",
    type=float,
    help="Seconds a client has to send a request head (setting header_timeout; default 10).",
)
@click.option(
    "--body-timeout",
    type=float,
    help="Seconds a request body may take, an upload 1 s more per 500 bytes"
    " (setting body_timeout; default 30).",
)
def server_run(
    data_dir: Path,
    host: str,
    port: int,
    threads: int | None,
    connection_limit: int | None,
    header_timeout: float | None,
    body_timeout: float | None,
) -> None:
    """Run the server for the single-machine default (production: see docs/deployment.md).

    Serves with waitress: bounded worker threads, a connection cap below the
    open-file limit, and deadlines for request heads and bodies, so slow or
    abundant clients cannot exhaust it (threat SRV-DOS). Stops cleanly on
    SIGTERM or Ctrl-C.
    """
    from update_server.app import create_app
    from update_server.config import with_overrides
    from update_server.serve import serve

    flags = {
        "threads": threads,
        "connection_limit": connection_limit,
        "header_timeout": header_timeout,
        "body_timeout": body_timeout,
    }
    config = with_overrides(_config(data_dir), **{k: v for k, v in flags.items() if v is not None})
    app = create_app(config)

    def banner(bound_host: str, bound_port: int) -> None:
        click.echo(
            f"pumpguard server on http://{bound_host}:{bound_port} (TUF at /tuf/, API at /api/v1/)",
            err=True,
        )

    serve(app, config, host, port, ready=banner)


@server.command("refresh")
@_data_option
@click.option("--force", is_flag=True, help="Re-sign even when not yet due.")
def server_refresh(data_dir: Path, force: bool) -> None:
    """Re-sign snapshot and timestamp when due (for cron; the server also does it itself)."""
    from update_server.refresher import refresh_online_roles

    done = refresh_online_roles(_config(data_dir), force=force)
    click.echo("re-signed snapshot and timestamp" if done else "snapshot and timestamp are fresh")


@server.group("token")
def token() -> None:
    """Create, list and revoke API tokens."""


@token.command("create")
@_data_option
@click.option("--name", required=True, help="Who or what the token is for.")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option(
    "--product",
    "products",
    multiple=True,
    help="Product a release-engineer token may publish (repeat).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write the secret to (mode 0600); it is never printed.",
)
@click.option("--json", "as_json", is_flag=True)
def token_create(
    data_dir: Path, name: str, role: str, products: tuple[str, ...], out: Path, as_json: bool
) -> None:
    """Create a token; the secret goes to --out only, the database keeps its hash."""
    from update_server.auth import create_token

    if out.exists():
        raise ConfigError(f"{out} exists; refusing to overwrite a token file")
    with _session(_config(data_dir)) as session:
        row, secret = create_token(session, name, role, products)
        token_id = row.id
    _write_secret(out, secret)
    info = {
        "id": token_id,
        "name": name,
        "role": role,
        "products": sorted(products),
        "file": str(out),
    }
    click.echo(json.dumps(info) if as_json else f"token {token_id} ({role}) written to {out}")


@token.command("list")
@_data_option
@click.option("--json", "as_json", is_flag=True)
def token_list(data_dir: Path, as_json: bool) -> None:
    """List tokens (never their secrets)."""
    from sqlalchemy import select

    from update_server.models import ApiToken

    with _session(_config(data_dir)) as session:
        rows: list[dict[str, Any]] = [
            {
                "id": t.id,
                "name": t.name,
                "role": t.role,
                "products": t.products,
                "created_at": t.created_at.isoformat(),
                "revoked": t.revoked_at is not None,
            }
            for t in session.execute(select(ApiToken).order_by(ApiToken.id)).scalars()
        ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        state = "revoked" if r["revoked"] else "active"
        click.echo(
            f"{r['id']:>4}  {r['role']:<17} {state:<8} {r['name']}  {','.join(r['products'])}"
        )


@token.command("revoke")
@_data_option
@click.argument("token_id", type=int)
def token_revoke(data_dir: Path, token_id: int) -> None:
    """Revoke a token; it stops working at once."""
    from update_server.auth import revoke_token

    with _session(_config(data_dir)) as session:
        revoke_token(session, token_id)
    click.echo(f"token {token_id} revoked")


@server.group("audit")
def audit_group() -> None:
    """Inspect the hash-chained audit log."""


@audit_group.command("verify")
@_data_option
@click.option(
    "--expected-head", metavar="HASH", help="The chain must end at this hash (recorded off-site)."
)
@click.option(
    "--expected-entry",
    "anchors",
    metavar="SEQ:HASH",
    multiple=True,
    callback=lambda _ctx, _param, values: dict(_parse_anchor(v) for v in values),
    help="An entry recorded off-site earlier (as printed: 'anchor SEQ:HASH'); it must still"
    " be in the chain. Repeatable.",
)
@click.option("--json", "as_json", is_flag=True)
def audit_verify(
    data_dir: Path, expected_head: str | None, anchors: dict[int, str], as_json: bool
) -> None:
    """Recompute the audit chain; exit 4 when an entry was changed or removed.

    Record the printed anchor somewhere the server cannot write (a ticket, a
    notebook, another system) and pass it with --expected-entry later: a
    rewritten history then fails even though every hash was recomputed.
    """
    from update_server.audit import verify_chain

    with _session(_config(data_dir)) as session:
        report = verify_chain(session, expected_head, anchors)
    anchor = f"{report.entries}:{report.head}"
    if as_json:
        click.echo(
            json.dumps(
                {"entries": report.entries, "head": report.head, "anchor": anchor, "ok": True}
            )
        )
    else:
        click.echo(
            f"audit chain intact: {report.entries} entries, head {report.head} (anchor {anchor})"
        )


def _parse_anchor(value: str) -> tuple[int, str]:
    seq, sep, digest = value.partition(":")
    if (
        not sep
        or not seq.isdigit()
        or int(seq) < 1
        or len(digest) != 64
        or not all(c in "0123456789abcdef" for c in digest)
    ):
        raise click.BadParameter(f"{value!r} is not SEQ:HASH (a number and 64 hex digits)")
    return int(seq), digest
