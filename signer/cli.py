"""``pumpguard keys``, ``pumpguard repo`` and ``pumpguard release``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from securesystemslib.signer import Signer, SSlibKey

from pumpguard.errors import ConfigError
from signer import _pkcs11
from signer.bundle import create_release, publish_bundle, sign_bundle, verify_bundle
from signer.keys import (
    DEFAULT_PASSPHRASE_ENV,
    KeyType,
    PassphraseSource,
    generate_keypair,
    load_public_key,
    load_signer,
    public_key_to_json,
    write_public_key,
)
from signer.repository import DEFAULT_EXPIRY_DAYS, OnlineSigners, RepoConfig, Repository
from signer.status import repo_status

__all__ = ["keys", "release", "repo"]

F = TypeVar("F", bound=Callable[..., Any])


def _passphrase_option(f: F) -> F:
    return click.option(
        "--passphrase-env",
        default=DEFAULT_PASSPHRASE_ENV,
        show_default=True,
        metavar="NAME",
        help="Environment variable holding key passphrases (else prompted on a terminal).",
    )(f)


def _json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(f)


def _repo_option(f: F) -> F:
    return click.option(
        "--repo",
        "repo_dir",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Repository directory.",
    )(f)


def _online_options(f: F) -> F:
    f = click.option(
        "--timestamp-key", required=True, metavar="KEY", help="Timestamp key file or PKCS#11 URI."
    )(f)
    return click.option(
        "--snapshot-key", required=True, metavar="KEY", help="Snapshot key file or PKCS#11 URI."
    )(f)


_PUB = click.Path(dir_okay=False, path_type=Path)


def _pub_option(flag: str, dest: str, help_: str, *, multiple: bool = True) -> Callable[[F], F]:
    """A required option naming public key file(s)."""
    return click.option(flag, dest, multiple=multiple, required=True, type=_PUB, help=help_)


def _signers(specs: Sequence[str], passphrase_env: str) -> list[Signer]:
    source = PassphraseSource(passphrase_env)
    return [load_signer(spec, source) for spec in specs]


def _online(snapshot_key: str, timestamp_key: str, passphrase_env: str) -> OnlineSigners:
    snap, ts = _signers([snapshot_key, timestamp_key], passphrase_env)
    return OnlineSigners(snap, ts)


def _pubkeys(paths: Sequence[Path]) -> list[SSlibKey]:
    return [load_public_key(p) for p in paths]


def _emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else text)


# ---------------------------------------------------------------------- keys
@click.group()
def keys() -> None:
    """Generate and inspect signing keys."""


@keys.command("generate")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="DIR/NAME: writes NAME.key, NAME.pub.",
)
@click.option(
    "--type",
    "key_type",
    type=click.Choice([t.value for t in KeyType]),
    default=KeyType.ED25519.value,
    show_default=True,
)
@click.option(
    "--pkcs11",
    "pkcs11_uri",
    metavar="URI",
    help="Generate an ECDSA P-256 key inside this PKCS#11 token; write only NAME.pub.",
)
@click.option("--insecure-no-passphrase", is_flag=True, help="Write the private key unencrypted.")
@_passphrase_option
@_json_option
def keys_generate(
    out: Path,
    key_type: str,
    pkcs11_uri: str | None,
    insecure_no_passphrase: bool,
    passphrase_env: str,
    as_json: bool,
) -> None:
    """Generate a key pair: NAME.key (encrypted PKCS#8 PEM) and NAME.pub (TUF format)."""
    if pkcs11_uri:
        key = _pkcs11.generate_pkcs11_key(pkcs11_uri)
        pub = out.with_name(out.name + ".pub")
        if pub.exists():
            raise ConfigError(f"{pub} exists; refusing to overwrite a key")
        out.parent.mkdir(parents=True, exist_ok=True)
        write_public_key(key, pub)
        _emit(
            as_json,
            public_key_to_json(key),
            f"generated {key.keyid[:12]} in the token; wrote {pub}",
        )
        return
    passphrase = None
    if not insecure_no_passphrase:
        passphrase = PassphraseSource(passphrase_env).get("New key passphrase: ", confirm=True)
    key = generate_keypair(
        out, KeyType(key_type), passphrase, insecure_no_passphrase=insecure_no_passphrase
    )
    _emit(
        as_json,
        {**public_key_to_json(key), "private": f"{out}.key", "public": f"{out}.pub"},
        f"generated {key_type} key {key.keyid[:12]}: {out}.key (private), {out}.pub (public)",
    )


@keys.command("import-pkcs11")
@click.argument("uri")
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Public key file to write."
)
@_json_option
def keys_import_pkcs11(uri: str, out: Path, as_json: bool) -> None:
    """Export the public key of a PKCS#11 key (HSM) as a .pub file."""
    key = _pkcs11.import_pkcs11_public_key(uri)
    if out.exists():
        raise ConfigError(f"{out} exists; refusing to overwrite a key")
    write_public_key(key, out)
    _emit(as_json, public_key_to_json(key), f"wrote {out} ({key.keyid[:12]})")


@keys.command("show")
@click.argument("pub", type=click.Path(dir_okay=False, path_type=Path))
@_json_option
def keys_show(pub: Path, as_json: bool) -> None:
    """Show a public key's keyid, type and scheme."""
    key = load_public_key(pub)
    _emit(as_json, public_key_to_json(key), f"{key.keyid}  {key.keytype}  {key.scheme}")


# ---------------------------------------------------------------------- repo
@click.group()
def repo() -> None:
    """Create and maintain the TUF repository."""


def _parse_expiry(values: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for value in values:
        role, _, days = value.partition("=")
        try:
            out[role] = float(days)
        except ValueError as e:
            raise ConfigError(f"--expires {value!r}: expected ROLE=DAYS") from e
        if role not in DEFAULT_EXPIRY_DAYS:
            raise ConfigError(
                f"--expires: unknown role {role!r} (one of {', '.join(DEFAULT_EXPIRY_DAYS)})"
            )
    return out


@repo.command("init")
@_repo_option
@_pub_option("--root-key", "root_keys", "Root public key (repeat).")
@click.option("--root-threshold", type=click.IntRange(min=1), default=1, show_default=True)
@_pub_option("--targets-key", "targets_keys", "Targets public key (repeat).")
@_pub_option("--snapshot-key", "snapshot_key", "Snapshot public key.", multiple=False)
@_pub_option("--timestamp-key", "timestamp_key", "Timestamp public key.", multiple=False)
@click.option(
    "--sign",
    "sign",
    multiple=True,
    required=True,
    metavar="KEY",
    help="Private key file or PKCS#11 URI for root and targets (repeat); snapshot and "
    "timestamp keys given here sign the first snapshot and timestamp too.",
)
@click.option(
    "--expires",
    multiple=True,
    metavar="ROLE=DAYS",
    help="Lifetime of a role (root, targets, products, snapshot, timestamp).",
)
@click.option(
    "--release-window",
    type=click.IntRange(min=2),
    default=32,
    show_default=True,
    help="Releases a product's metadata lists.",
)
@_passphrase_option
@_json_option
def repo_init(
    repo_dir: Path,
    root_keys: tuple[Path, ...],
    root_threshold: int,
    targets_keys: tuple[Path, ...],
    snapshot_key: Path,
    timestamp_key: Path,
    sign: tuple[str, ...],
    expires: tuple[str, ...],
    release_window: int,
    passphrase_env: str,
    as_json: bool,
) -> None:
    """Create a repository: root v1, targets v1 (consistent snapshots on)."""
    config = RepoConfig(
        expiry_days={**DEFAULT_EXPIRY_DAYS, **_parse_expiry(expires)}, release_window=release_window
    )
    r = Repository.init(
        repo_dir,
        root_keys=_pubkeys(root_keys),
        root_threshold=root_threshold,
        targets_keys=_pubkeys(targets_keys),
        snapshot_keys=_pubkeys([snapshot_key]),
        timestamp_keys=_pubkeys([timestamp_key]),
        signers=_signers(sign, passphrase_env),
        config=config,
    )
    published = (r.metadata_dir / "timestamp.json").exists()
    _emit(
        as_json,
        {
            "repo": str(repo_dir),
            "root": str(r.metadata_dir / "1.root.json"),
            "online_signed": published,
        },
        f"created repository {repo_dir}; pumps ship {r.metadata_dir / '1.root.json'} as their root"
        + (
            ""
            if published
            else "\nsnapshot and timestamp are signed at the first publish or refresh"
        ),
    )


@repo.command("add-product")
@_repo_option
@click.option("--product", required=True, help="Product line; becomes the role for PRODUCT/*.")
@_pub_option("--key", "keys_", "Release engineer / QA public key (repeat).")
@click.option(
    "--threshold",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Signatures a release needs (2 = two-person rule).",
)
@click.option(
    "--sign",
    multiple=True,
    required=True,
    metavar="KEY",
    help="Targets private key file or PKCS#11 URI.",
)
@_online_options
@_passphrase_option
def repo_add_product(
    repo_dir: Path,
    product: str,
    keys_: tuple[Path, ...],
    threshold: int,
    sign: tuple[str, ...],
    snapshot_key: str,
    timestamp_key: str,
    passphrase_env: str,
) -> None:
    """Delegate PRODUCT/* to a new product role (terminating)."""
    Repository(repo_dir).add_product(
        product,
        _pubkeys(keys_),
        threshold,
        _signers(sign, passphrase_env),
        _online(snapshot_key, timestamp_key, passphrase_env),
    )
    click.echo(f"added product {product}: {len(keys_)} key(s), threshold {threshold}")


@repo.command("rotate-product")
@_repo_option
@click.option("--product", required=True)
@_pub_option("--key", "keys_", "New product public key (repeat).")
@click.option("--threshold", type=click.IntRange(min=1), default=2, show_default=True)
@click.option(
    "--sign",
    multiple=True,
    required=True,
    metavar="KEY",
    help="Targets key, and the new product keys to re-sign its metadata (repeat).",
)
@_online_options
@_passphrase_option
def repo_rotate_product(
    repo_dir: Path,
    product: str,
    keys_: tuple[Path, ...],
    threshold: int,
    sign: tuple[str, ...],
    snapshot_key: str,
    timestamp_key: str,
    passphrase_env: str,
) -> None:
    """Replace a product's keys and threshold."""
    Repository(repo_dir).rotate_product(
        product,
        _pubkeys(keys_),
        threshold,
        _signers(sign, passphrase_env),
        _online(snapshot_key, timestamp_key, passphrase_env),
    )
    click.echo(f"rotated {product}: {len(keys_)} key(s), threshold {threshold}")


@repo.command("rotate-root")
@_repo_option
@click.option(
    "--add-key",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Root public key to add (repeat).",
)
@click.option(
    "--remove-key",
    multiple=True,
    metavar="PUB|KEYID",
    help="Root key to revoke: .pub file or keyid (repeat).",
)
@click.option("--threshold", type=click.IntRange(min=1), help="New root threshold.")
@click.option(
    "--sign",
    multiple=True,
    required=True,
    metavar="KEY",
    help="Old and new root private keys (repeat).",
)
@_passphrase_option
def repo_rotate_root(
    repo_dir: Path,
    add_key: tuple[Path, ...],
    remove_key: tuple[str, ...],
    threshold: int | None,
    sign: tuple[str, ...],
    passphrase_env: str,
) -> None:
    """Write a new root with keys added or revoked, signed by old and new root keys."""
    removals = [load_public_key(Path(k)).keyid if Path(k).is_file() else k for k in remove_key]
    new = Repository(repo_dir).rotate_root(
        add_keys=_pubkeys(add_key),
        remove_keyids=removals,
        threshold=threshold,
        signers=_signers(sign, passphrase_env),
    )
    role = new.signed.roles["root"]
    click.echo(
        f"wrote root v{new.signed.version}: {len(role.keyids)} key(s), threshold {role.threshold}"
    )


@repo.command("refresh")
@_repo_option
@_online_options
@click.option("--force", is_flag=True, help="Re-sign even when not yet due.")
@_passphrase_option
def repo_refresh(
    repo_dir: Path, snapshot_key: str, timestamp_key: str, force: bool, passphrase_env: str
) -> None:
    """Re-sign snapshot and timestamp when they enter their refresh window (for cron)."""
    done = Repository(repo_dir).refresh(
        _online(snapshot_key, timestamp_key, passphrase_env), force=force
    )
    click.echo("re-signed snapshot and timestamp" if done else "snapshot and timestamp are fresh")


@repo.command("status")
@_repo_option
@_json_option
def repo_status_cmd(repo_dir: Path, as_json: bool) -> None:
    """List every role's version, keys, threshold and expiry; warn when one is due."""
    status = repo_status(Repository(repo_dir))
    if as_json:
        click.echo(json.dumps(status.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(status.to_text())
    if status.errors:
        raise SystemExit(4)


# ------------------------------------------------------------------- release
@click.group()
def release() -> None:
    """Create, sign, verify and publish releases (two people must sign)."""


@release.command("create")
@_repo_option
@click.option("--product", required=True)
@click.option("--version", "version_", required=True, help="Semantic version of the release.")
@click.option(
    "--release-counter", required=True, type=click.IntRange(min=1), help="Anti-rollback counter."
)
@click.option(
    "--hardware-id",
    "hardware_ids",
    multiple=True,
    required=True,
    help="Pump hardware revision (repeat).",
)
@click.option(
    "--firmware", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@click.option(
    "--components",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="TOML component manifest for the SBOM.",
)
@click.option("--supplier", help="Firmware supplier (the manufacturer).")
@click.option("--notes", default="", help="Release notes.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle to write.")
@click.option("--tar", is_flag=True, help="Write the bundle as one .tar file.")
@_json_option
def release_create(
    repo_dir: Path,
    product: str,
    version_: str,
    release_counter: int,
    hardware_ids: tuple[str, ...],
    firmware: Path,
    components: Path | None,
    supplier: str | None,
    notes: str,
    out: Path,
    tar: bool,
    as_json: bool,
) -> None:
    """Build an unsigned release bundle: firmware, SBOM and the product's next metadata."""
    bundle = create_release(
        repo=Repository(repo_dir),
        product=product,
        version=version_,
        release_counter=release_counter,
        hardware_ids=hardware_ids,
        firmware=firmware,
        out=out,
        components=components,
        notes=notes,
        supplier=supplier,
        tar=tar,
    )
    _emit(
        as_json,
        {
            "bundle": str(out),
            "product": product,
            "version": version_,
            "release_counter": release_counter,
        },
        f"created bundle {out} for {product} {version_} (counter {release_counter}); "
        "it needs signatures",
    )
    del bundle


@release.command("sign")
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.option("--key", required=True, metavar="KEY", help="Your private key file or PKCS#11 URI.")
@_passphrase_option
@_json_option
def release_sign(bundle: Path, key: str, passphrase_env: str, as_json: bool) -> None:
    """Add your signature to a bundle (needs only the bundle and your key)."""
    signer = load_signer(key, PassphraseSource(passphrase_env))
    info, keyid = sign_bundle(bundle, signer)
    _emit(
        as_json,
        {"bundle": str(bundle), "keyid": keyid, "product": info.product, "version": info.version},
        f"signed {info.product} {info.version} (counter {info.release_counter}, "
        f"hardware {', '.join(info.hardware_ids)}) with {keyid[:12]}",
    )


@release.command("verify")
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@_repo_option
@_json_option
def release_verify(bundle: Path, repo_dir: Path, as_json: bool) -> None:
    """Say who signed, whether the threshold is met and whether the bundle is intact.

    Exit code 0 when the bundle can be published, 4 otherwise.
    """
    report = verify_bundle(bundle, Repository(repo_dir))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        sig = report.signatures
        lines = [
            f"{report.product} {report.version} (counter {report.release_counter}, "
            f"metadata v{report.metadata_version})",
            f"signed by {len(sig.signed)} of {sig.threshold} required: "
            + (", ".join(k[:12] for k in sig.signed) or "nobody"),
        ]
        if sig.unknown:
            lines.append(
                "not counted (keys not in the delegation): "
                + ", ".join(k[:12] for k in sig.unknown)
            )
        lines.append(
            "intact: yes" if report.intact else "intact: NO - " + "; ".join(report.problems)
        )
        lines.append(
            "publishable: yes" if report.publishable else f"publishable: NO - {report.refusal}"
        )
        click.echo("\n".join(lines))
    if not report.publishable:
        raise SystemExit(4)


@release.command("publish")
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--repo",
    "repo_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Publish into this local repository directory.",
)
@click.option(
    "--server",
    metavar="URL",
    help="Publish through this update server (POST /api/v1/releases); it verifies everything.",
)
@click.option(
    "--token-env",
    default="PUMPGUARD_TOKEN",
    show_default=True,
    metavar="NAME",
    help="With --server: environment variable holding your API token.",
)
@click.option("--snapshot-key", metavar="KEY", help="With --repo: snapshot key file or URI.")
@click.option("--timestamp-key", metavar="KEY", help="With --repo: timestamp key file or URI.")
@_passphrase_option
@_json_option
def release_publish(
    bundle: Path,
    repo_dir: Path | None,
    server: str | None,
    token_env: str,
    snapshot_key: str | None,
    timestamp_key: str | None,
    passphrase_env: str,
    as_json: bool,
) -> None:
    """Publish a signed bundle into a local repository or through the update server.

    Either --repo DIR with the online --snapshot-key and --timestamp-key
    (timestamp written last), or --server URL with an API token: the server
    holds the online keys and runs every check before anything is visible.
    """
    if (repo_dir is None) == (server is None):
        raise click.UsageError("give exactly one of --repo and --server")
    if server is not None:
        if snapshot_key or timestamp_key:
            raise click.UsageError("--snapshot-key/--timestamp-key go with --repo, not --server")
        _publish_to_server(bundle, server, token_env, as_json)
        return
    if repo_dir is None or not snapshot_key or not timestamp_key:
        raise click.UsageError("--repo needs --snapshot-key and --timestamp-key")
    verified = publish_bundle(
        bundle, Repository(repo_dir), _online(snapshot_key, timestamp_key, passphrase_env)
    )
    r = verified.release
    _emit(
        as_json,
        {
            "product": r.product,
            "version": r.version,
            "release_counter": r.release_counter,
            "targets": sorted(verified.new_targets),
            "removed": list(verified.removed_targets),
            "signed_by": list(verified.signatures.signed),
        },
        f"published {r.product} {r.version} (counter {r.release_counter}), signed by "
        f"{len(verified.signatures.signed)} of {verified.signatures.threshold}",
    )


def _publish_to_server(bundle: Path, server: str, token_env: str, as_json: bool) -> None:
    from signer._upload import releases_endpoint, token_from_env, upload_bundle

    releases_endpoint(server)  # a bad URL is reported before a missing token
    token = token_from_env(token_env)
    published = upload_bundle(bundle, server, token, progress=False if as_json else None)
    _emit(
        as_json,
        published,
        f"published {published.get('product')} {published.get('version')} "
        f"(counter {published.get('release_counter')}) on {server}, signed by "
        f"{len(published.get('signed_by') or [])} key(s)",
    )
