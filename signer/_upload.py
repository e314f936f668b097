"""Uploading a signed bundle to the update server (``release publish --server``).

The server re-verifies everything, so the upload path needs no trust; it must
only not leak the API token: plain ``http://`` is accepted for loopback
servers alone (threat SRV-TOKEN-THEFT), and TLS certificates are verified.
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import urllib3

from pumpguard.errors import ConfigError, PumpguardError, ReleaseContractError
from pumpguard.http import check_server_url, error_message
from pumpguard.jsonutil import loads_strict
from pumpguard.release import validate_product
from signer._bundle import MANIFEST, MAX_MEMBERS
from signer._tarstream import write_tar
from signer.bundle import open_bundle
from signer.errors import BundleError

__all__ = ["UploadError", "releases_endpoint", "token_from_env", "upload_bundle"]

_CHUNK = 256 * 1024
_PATH = "/api/v1/releases"


class UploadError(PumpguardError):
    """The server refused or failed the upload.

    ``exit_code`` follows the CLI's convention: 4 for a refused (unverifiable)
    release, 2 for a missing, unknown or insufficient token, 1 otherwise.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        if status == 422:
            self.exit_code = 4
        elif status in (401, 403):
            self.exit_code = 2


def releases_endpoint(server: str) -> str:
    """The publish URL of ``server``; plain http only to loopback.

    Raises:
        ConfigError: ``server`` is not an http(s) URL, or http to another host.
    """
    return check_server_url(server) + _PATH


def _chunks(path: Path, advance: Callable[[int], None]) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            advance(len(chunk))
            yield chunk


def _manifest_product(tar: Path) -> str:
    """The product a bundle tar's ``bundle.json`` names, to declare before the body.

    The server checks the token's scope over the declared product before it
    reads one byte of the body, and refuses a bundle of another product; it
    verifies everything else itself.
    """
    try:
        with tarfile.open(tar, "r:") as archive:
            for _, member in zip(range(MAX_MEMBERS), archive, strict=False):
                if member.isfile() and member.name.removeprefix("./") == MANIFEST:
                    f = archive.extractfile(member)
                    raw = loads_strict(f.read(64 << 10)) if f else None
                    return validate_product(raw.get("product") if isinstance(raw, dict) else None)
    except (tarfile.TarError, OSError, ValueError, ReleaseContractError) as e:
        raise BundleError(f"cannot read the {MANIFEST} of {tar}: {e}") from e
    raise BundleError(f"{tar} is not a release bundle (no {MANIFEST})")


def _post(
    url: str, tar: Path, token: str, progress: bool, timeout: float, product: str
) -> dict[str, Any]:
    size = tar.stat().st_size
    publish_url = f"{url}?{urlencode({'product': product})}"
    headers = {
        "Content-Type": "application/x-tar",
        "Content-Length": str(size),
        "Authorization": f"Bearer {token}",
        "Accept": "application/json",
    }
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=10, read=timeout))
    try:
        # A bad token is refused before the body is read; find out before
        # sending gigabytes into a closed connection.
        check = http.request(
            "GET", url + "?limit=1", headers={"Authorization": headers["Authorization"]}
        )
        if check.status == 401:
            raise UploadError(
                f"the server refused the token ({check.status}): {error_message(check.data)}",
                check.status,
            )
        if progress:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            with Progress(
                TextColumn("uploading {task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            ) as bar:
                task = bar.add_task(tar.name, total=size)
                body = _chunks(tar, lambda n: bar.advance(task, n))
                response = http.request("POST", publish_url, body=body, headers=headers)
        else:
            body = _chunks(tar, lambda n: None)
            response = http.request("POST", publish_url, body=body, headers=headers)
    except urllib3.exceptions.HTTPError as e:
        raise UploadError(f"cannot upload to {url}: {e}") from e
    finally:
        http.clear()
    if response.status != 201:
        raise UploadError(
            f"the server refused the release ({response.status}): {error_message(response.data)}",
            response.status,
        )
    try:
        release: dict[str, Any] = json.loads(response.data)
    except ValueError as e:
        raise UploadError(f"the server answered 201 without a JSON release: {e}") from e
    return release


def upload_bundle(
    bundle: Path,
    server: str,
    token: str,
    *,
    progress: bool | None = None,
    timeout: float = 3600,
) -> dict[str, Any]:
    """Upload a signed bundle to ``server``'s ``POST /api/v1/releases``.

    A directory bundle is packed into a temporary ``.tar`` first.

    Args:
        bundle: Bundle directory or ``.tar`` file.
        server: Base URL of the update server.
        token: A release-engineer API token for the bundle's product.
        progress: Show a progress bar on stderr; by default when stderr is a terminal.
        timeout: Seconds to wait for the server's answer (it verifies the whole bundle).

    Returns:
        The published release as the server describes it.

    Raises:
        ConfigError: ``server`` is not an acceptable URL.
        BundleError: ``bundle`` is not a bundle.
        UploadError: The server refused the release or could not be reached.
    """
    url = releases_endpoint(server)
    if progress is None:
        progress = sys.stderr.isatty()
    if bundle.is_dir():
        with open_bundle(bundle) as opened, tempfile.TemporaryDirectory() as tmp:
            tar = Path(tmp) / f"{opened.product}-{opened.version}.tar"
            write_tar(bundle, tar)
            return _post(url, tar, token, progress, timeout, opened.product)
    if not bundle.is_file() or not tarfile.is_tarfile(bundle):
        raise BundleError(f"{bundle} is neither a bundle directory nor a bundle .tar")
    return _post(url, bundle, token, progress, timeout, _manifest_product(bundle))


def token_from_env(name: str) -> str:
    """The API token held in environment variable ``name``.

    Raises:
        ConfigError: The variable is unset or empty.
    """
    token = os.environ.get(name, "").strip()
    if not token:
        raise ConfigError(f"set {name} to your API token (pumpguard server token create ...)")
    return token
