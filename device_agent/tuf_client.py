"""The agent's TUF client: ngclient with the pump's root and durable metadata.

:class:`TufClient` wraps :class:`tuf.ngclient.Updater`:

* The root the pump was manufactured with is always passed as ``bootstrap``
  (TUF spec 5.2: the trusted root comes with the client), never the cached
  ``root.json``: nothing on the pump's disk can replace the trust anchor, and
  newer roots are only reached by the verified rotation chain (TUF spec 5.3).
* Metadata is cached in ``metadata_dir``. ngclient replaces cached files with
  a rename but does not fsync them (python-tuf 7.0), so a power loss could
  leave an empty ``timestamp.json`` and forget the newest versions the pump
  has seen, weakening rollback protection (TUF spec 5.4.3, 5.5.5). The
  agent's updater writes them through :func:`device_agent._durable.atomic_write`
  instead: fsynced, renamed, directory fsynced, and visible to the
  power-loss harness.
* :meth:`TufClient.find_firmware` accepts only the pump's own product's
  firmware path, looks it up through the delegation (TUF spec 5.6.7) and
  returns the signed target with its release contract and download URL.

Errors: every :class:`tuf.api.exceptions.RepositoryError` (bad or missing
signatures, rollback, expiry, mix-and-match) and metadata longer than its cap
(endless data) refuse the update (:class:`UpdateRefusedError`, ``reason``
``tuf-<kind>``); a network failure or a slow server is a
:class:`TransferError` (retried later, its ``reason`` reported:
``slow-retrieval`` is as much an attack sign as a bad network, and a later
attempt may well succeed, so it is not a refusal).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tuf.api import exceptions
from tuf.api.metadata import TargetFile
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from device_agent._durable import atomic_write, fsync_dir
from device_agent.errors import AgentConfigError, TransferError, UpdateRefusedError
from pumpguard.contract import RefusalReason, http_reason
from pumpguard.errors import ConfigError, ReleaseContractError
from pumpguard.http import check_server_url
from pumpguard.release import FIRMWARE_NAME, ReleaseInfo, SemVer, validate_product

__all__ = [
    "DEFAULT_CONFIG",
    "TufClient",
    "VerifiedTarget",
    "refusal_reason",
    "translate_download_error",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Caps for a pump: a product's metadata lists a window of releases, so the
#: targets cap is generous but far below ngclient's 5 MB default; one
#: delegation level (targets -> product) is all pumpguard uses.
DEFAULT_CONFIG = UpdaterConfig(
    max_root_rotations=32,
    max_delegations=4,
    root_max_length=256 * 1024,
    timestamp_max_length=16 * 1024,
    snapshot_max_length=1024 * 1024,
    targets_max_length=1024 * 1024,
    prefix_targets_with_hash=True,
    app_user_agent=None,
)


@dataclass(frozen=True)
class VerifiedTarget:
    """A firmware target found in verified metadata (not yet downloaded).

    Attributes:
        target_file: The signed length, hashes and custom field.
        release: The release contract read from ``custom``.
        url: Where the file is downloaded from (consistent snapshot name).
    """

    target_file: TargetFile
    release: ReleaseInfo
    url: str

    @property
    def path(self) -> str:
        """The target path, ``<product>/<version>/firmware.img``."""
        return self.target_file.path

    @property
    def length(self) -> int:
        """The signed length in bytes."""
        return self.target_file.length


#: TUF verification failures and the reason each is reported as; a subclass
#: (``EqualVersionNumberError`` is a ``BadVersionNumberError``) takes its
#: base's, anything else ``tuf-repository``.
_TUF_REASONS: tuple[tuple[type[Exception], RefusalReason], ...] = (
    (exceptions.UnsignedMetadataError, RefusalReason.TUF_UNSIGNED_METADATA),
    (exceptions.BadVersionNumberError, RefusalReason.TUF_BAD_VERSION_NUMBER),
    (exceptions.ExpiredMetadataError, RefusalReason.TUF_EXPIRED_METADATA),
    (exceptions.LengthOrHashMismatchError, RefusalReason.TUF_LENGTH_OR_HASH_MISMATCH),
)


def refusal_reason(error: Exception) -> RefusalReason:
    """The reason reported for a TUF verification failure."""
    for kind, reason in _TUF_REASONS:
        if isinstance(error, kind):
            return reason
    return RefusalReason.TUF_REPOSITORY


def translate_download_error(error: exceptions.DownloadError, what: str) -> Exception:
    """The agent error for a failed transfer of ``what``.

    Returns:
        :class:`UpdateRefusedError` (reason ``length``) for more data than
        signed (endless data), :class:`TransferError` otherwise.
    """
    if isinstance(error, exceptions.DownloadLengthMismatchError):
        return UpdateRefusedError(f"{what}: {error}", reason=RefusalReason.LENGTH)
    if isinstance(error, exceptions.SlowRetrievalError):
        return TransferError(f"{what}: {error}", reason=RefusalReason.SLOW_RETRIEVAL)
    if isinstance(error, exceptions.DownloadHTTPError):
        return TransferError(f"{what}: {error}", reason=http_reason(error.status_code))
    cause = error.__cause__ or error
    return TransferError(f"{what}: {error} ({cause})", reason=RefusalReason.NETWORK)


class _AgentUpdater(Updater):
    """ngclient's Updater with durable metadata writes and the target URL."""

    def _persist_file(self, filename: str, data: bytes) -> None:
        # Replaces ngclient's rename-without-fsync (see the module docstring).
        path = Path(filename)
        # ngclient re-persists the bootstrap root at every session: skip
        # identical rewrites (flash wear, and needless crash windows).
        with contextlib.suppress(OSError):
            if path.read_bytes() == data:
                return
        atomic_write(path, data, f"tuf {path.name}", mode=0o644)

    def target_url(self, target: TargetFile, base_url: str) -> str:
        """The URL ``download_target`` would fetch ``target`` from.

        With consistent snapshots (TUF spec 5.7.3) the file name is prefixed
        with the first listed hash, exactly as ngclient 7 does it.
        """
        path = target.path
        if self._trusted_set.root.consistent_snapshot and self.config.prefix_targets_with_hash:
            digest = next(iter(target.hashes.values()))
            directory, sep, name = path.rpartition("/")
            path = f"{directory}{sep}{digest}.{name}"
        return f"{base_url.rstrip('/')}/{path}"


class TufClient:
    """Verified access to the repository for one pump.

    Args:
        metadata_dir: Where verified metadata is cached (created if absent).
        metadata_url: Base URL of the repository's ``metadata/``.
        targets_url: Base URL of the repository's ``targets/``.
        bootstrap_root: The root metadata shipped with the pump.
        fetcher: Network access, usually a
            :class:`device_agent.fetcher.AgentFetcher`.
        config: Length caps and limits; :data:`DEFAULT_CONFIG` by default.

    Raises:
        AgentConfigError: A URL is not allowed or ``bootstrap_root`` is not
            valid root metadata.
    """

    def __init__(
        self,
        metadata_dir: Path,
        metadata_url: str,
        targets_url: str,
        bootstrap_root: bytes,
        fetcher: FetcherInterface,
        config: UpdaterConfig | None = None,
    ) -> None:
        try:
            self.metadata_url = check_server_url(metadata_url, "metadata URL")
            self.targets_url = check_server_url(targets_url, "targets URL")
        except ConfigError as e:
            raise AgentConfigError(str(e)) from e
        self.metadata_dir = metadata_dir
        self._bootstrap = bootstrap_root
        self._fetcher = fetcher
        self._config = config or DEFAULT_CONFIG
        self._updater: _AgentUpdater | None = None
        self._refreshed = False
        self._new_updater()  # fail early on a bad bootstrap root

    def _new_updater(self) -> _AgentUpdater:
        created = not self.metadata_dir.is_dir()
        (self.metadata_dir / "root_history").mkdir(parents=True, exist_ok=True)
        if created:
            fsync_dir(self.metadata_dir.parent, "tuf metadata dir")
        fsync_dir(self.metadata_dir, "tuf metadata dir")
        try:
            updater = _AgentUpdater(
                metadata_dir=str(self.metadata_dir),
                metadata_base_url=self.metadata_url + "/",
                target_dir=None,
                target_base_url=self.targets_url + "/",
                fetcher=self._fetcher,
                config=self._config,
                # TUF spec 5.2: the pump's own root, never trust-on-first-use.
                bootstrap=self._bootstrap,
            )
        except (exceptions.RepositoryError, ValueError) as e:
            raise AgentConfigError(f"the pump's bootstrap root is not valid: {e}") from e
        self._updater = updater
        self._refreshed = False
        return updater

    def refresh(self) -> None:
        """Update the top-level metadata (TUF spec 5.3 to 5.5).

        Each call starts a new ngclient session from the cached metadata, so
        a long-running agent can poll repeatedly.

        Raises:
            UpdateRefusedError: Metadata failed verification.
            TransferError: The repository could not be reached in time.
        """
        self._refresh()

    def _refresh(self) -> _AgentUpdater:
        updater = self._new_updater()
        self._guard(updater.refresh, "metadata refresh")
        self._refreshed = True
        return updater

    def find_firmware(self, path: str, product: str) -> VerifiedTarget:
        """Find the firmware ``path`` of ``product`` in verified metadata.

        Refreshes first if :meth:`refresh` was not called.

        Args:
            path: ``<product>/<semver>/firmware.img``, as assigned by the server
                (untrusted until checked here).
            product: The pump's product line.

        Raises:
            UpdateRefusedError: ``target-path`` (not this product's firmware
                path), ``target-not-found`` (no signed release has it),
                ``release-contract`` (its custom field is invalid) or a
                ``tuf-*`` reason.
            TransferError: The repository could not be reached in time.
        """
        _check_target_path(path, product)
        updater = self._updater
        if updater is None or not self._refreshed:
            updater = self._refresh()
        try:
            target = self._guard(lambda: updater.get_targetinfo(path), f"lookup of {path}")
        except UpdateRefusedError as e:
            # ngclient raises a bare RepositoryError when targets.json
            # delegates to the product but snapshot does not list its role
            # yet: the product exists but has no signed release.
            if e.reason is RefusalReason.TUF_REPOSITORY and "not part of snapshot" in str(e):
                raise UpdateRefusedError(
                    f"{path}: product {product!r} has no signed release",
                    reason=RefusalReason.TARGET_NOT_FOUND,
                ) from e
            raise
        if target is None:
            raise UpdateRefusedError(
                f"{path} is not a target signed by the {product!r} release engineers",
                reason=RefusalReason.TARGET_NOT_FOUND,
            )
        try:
            release = ReleaseInfo.from_custom(target.custom, target.path)
        except ReleaseContractError as e:
            raise UpdateRefusedError(f"{path}: {e}", reason=RefusalReason.RELEASE_CONTRACT) from e
        if release.product != product:  # pragma: no cover - from_custom checks the path
            raise UpdateRefusedError(
                f"{path} is a release of {release.product}", reason=RefusalReason.PRODUCT
            )
        return VerifiedTarget(target, release, updater.target_url(target, self.targets_url))

    def _guard(self, call: Callable[[], _T], what: str) -> _T:
        try:
            return call()
        except exceptions.RepositoryError as e:
            logger.warning("TUF verification failed in %s: %s", what, e)
            raise UpdateRefusedError(
                f"{what}: {type(e).__name__}: {e}", reason=refusal_reason(e)
            ) from e
        except exceptions.DownloadLengthMismatchError as e:
            # Metadata longer than signed or capped: endless data (TUF 5.3.x).
            raise UpdateRefusedError(
                f"{what}: {e}", reason=RefusalReason.TUF_DOWNLOAD_LENGTH_MISMATCH
            ) from e
        except exceptions.DownloadError as e:
            raise translate_download_error(e, what) from e


def _check_target_path(path: str, product: str) -> None:
    """Refuse any path other than ``<product>/<semver>/firmware.img``.

    The server's assignment is untrusted: a traversal (``..``), absolute or
    other product's path must not reach the lookup, nor become a file name.
    """
    try:
        validate_product(product)
    except ReleaseContractError as e:
        raise AgentConfigError(f"the pump's product: {e}") from e
    parts = path.split("/") if isinstance(path, str) else []
    ok = len(parts) == 3 and parts[0] == product and parts[2] == FIRMWARE_NAME
    if ok:
        try:
            SemVer.parse(parts[1])
        except ReleaseContractError:
            ok = False
    if not ok:
        raise UpdateRefusedError(
            f"target path {path!r} is not a {product} firmware path "
            f"({product}/<version>/{FIRMWARE_NAME})",
            reason=RefusalReason.TARGET_PATH,
        )
