"""Fetching a release's SBOM through TUF and checking it against the firmware.

The SBOM and the firmware target's metadata are fetched with python-tuf's
``ngclient.Updater``, trusting only the root given (never the repository's own
first root: no trust on first use). A repository on disk goes through the same
client, with a fetcher that reads files instead of making HTTP requests, so a
local check verifies exactly what a pump would.
"""

from __future__ import annotations

import dataclasses
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from tuf.api.exceptions import (
    DownloadError,
    DownloadHTTPError,
    DownloadLengthMismatchError,
    RepositoryError,
)
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from pumpguard.errors import ReleaseContractError
from pumpguard.release import ReleaseInfo, SemVer, firmware_path, validate_product
from sbom.binding import check_release_binding
from sbom.errors import SbomError, SbomVerificationError

__all__ = ["VerifiedSbom", "fetch_verified_sbom", "parse_release"]

_LOCAL = "pumpguard-local:/"
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class VerifiedSbom:
    """An SBOM fetched through TUF and bound to its release's firmware.

    Attributes:
        release: The firmware target's release contract.
        firmware_sha256: The firmware target's sha256.
        sbom: The SBOM's bytes.
        sbom_sha256: Their sha256.
    """

    release: ReleaseInfo
    firmware_sha256: str
    sbom: bytes
    sbom_sha256: str


def parse_release(text: str) -> tuple[str, str]:
    """Split ``PRODUCT/VERSION`` and validate both.

    Raises:
        SbomError: ``text`` is not a product and a semantic version.
    """
    product, slash, version = text.partition("/")
    try:
        if not slash:
            raise ReleaseContractError(f"release {text!r} must be PRODUCT/VERSION")
        validate_product(product)
        SemVer.parse(version)
    except ReleaseContractError as e:
        raise SbomError(str(e)) from e
    return product, version


class _DirectoryFetcher(FetcherInterface):
    """Serves ``DIR/metadata/`` and ``DIR/targets/`` to ngclient, files only."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    def _fetch(self, url: str) -> Iterator[bytes]:
        if not url.startswith(_LOCAL):
            raise DownloadHTTPError(f"{url} is outside the repository", 404)
        relative = urllib.parse.unquote(url[len(_LOCAL) :])
        path = (self._root / relative).resolve()
        # ngclient builds these names, but a delegation's role names come from
        # the repository: never read outside it.
        if not path.is_relative_to(self._root) or not path.is_file():
            raise DownloadHTTPError(f"{relative} not found", 404)
        return self._chunks(path)

    @staticmethod
    def _chunks(path: Path) -> Iterator[bytes]:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                yield chunk


def fetch_verified_sbom(
    *,
    root: bytes,
    product: str,
    version: str,
    repo: Path | None = None,
    server: str | None = None,
) -> VerifiedSbom:
    """Fetch a release's SBOM through TUF and check its firmware binding.

    Args:
        root: The trusted root metadata (``root.json``) to start from.
        product: Product line.
        version: Release version.
        repo: A repository directory (``metadata/`` and ``targets/``), or
        server: the update server's base URL (TUF under ``/tuf/``).

    Returns:
        The verified SBOM.

    Raises:
        SbomVerificationError: TUF refuses the metadata or targets, the release
            is not published, or the SBOM is not bound to its firmware.
        SbomError: The repository cannot be reached.
    """
    if (repo is None) == (server is None):
        raise SbomError("give exactly one of a repository directory or a server URL")
    where = str(repo) if repo is not None else str(server)
    fetcher: FetcherInterface | None = None
    if repo is not None:
        if not (repo / "metadata").is_dir():
            raise SbomError(f"{repo} is not a repository (no metadata/ folder)")
        fetcher = _DirectoryFetcher(repo)
        metadata_url, targets_url = f"{_LOCAL}metadata/", f"{_LOCAL}targets/"
    else:
        base = str(server).rstrip("/")
        metadata_url, targets_url = f"{base}/tuf/metadata/", f"{base}/tuf/targets/"
    with tempfile.TemporaryDirectory(prefix="pumpguard-verify-") as work:
        cache = Path(work)
        (cache / "targets").mkdir()
        try:
            updater = Updater(
                metadata_dir=str(cache),
                metadata_base_url=metadata_url,
                target_dir=str(cache / "targets"),
                target_base_url=targets_url,
                fetcher=fetcher,
                config=UpdaterConfig(),
                bootstrap=root,
            )
            updater.refresh()
            firmware = updater.get_targetinfo(firmware_path(product, version))
            if firmware is None:
                raise SbomVerificationError(f"{product}/{version} is not published in {where}")
            release = ReleaseInfo.from_custom(firmware.custom, firmware.path)
            sbom_info = updater.get_targetinfo(release.sbom_path)
            if sbom_info is None:
                raise SbomVerificationError(f"{release.sbom_path} is not published in {where}")
            sbom = Path(updater.download_target(sbom_info)).read_bytes()
        except ReleaseContractError as e:
            raise SbomVerificationError(f"{product}/{version}: {e}") from e
        except DownloadLengthMismatchError as e:
            # Longer than the signed metadata allows: tampering, not a network fault.
            raise SbomVerificationError(f"TUF verification failed for {where}: {e}") from e
        except DownloadError as e:
            raise SbomError(f"cannot fetch from {where}: {e}") from e
        except (RepositoryError, ValueError) as e:
            # ValueError: a root that is not root metadata at all.
            raise SbomVerificationError(f"TUF verification failed for {where}: {e}") from e
    firmware_sha256 = firmware.hashes.get("sha256")
    if firmware_sha256 is None:
        raise SbomVerificationError(f"{firmware.path} has no sha256 in its TUF metadata")
    check_release_binding(release, firmware_sha256, sbom)
    return VerifiedSbom(release, firmware_sha256, sbom, release.sbom_sha256)
