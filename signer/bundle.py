"""Release bundles: what release engineers pass between them and publish.

A bundle is a directory, or the same tree as one ``.tar`` file::

    bundle.json                     format, product, version
    metadata/<product>.json         the product role's next metadata (signed by
                                    each release engineer in turn)
    targets/<P>/<V>/firmware.img    the release's files
    targets/<P>/<V>/sbom.cdx.json

Reading bundles (:class:`Bundle`, :func:`open_bundle`, :func:`open_bundle_stream`)
lives in :mod:`signer._bundle`; they are exported here.

``release sign`` needs only the bundle and one key, so the second signature can
be added on another person's machine (the two-person release rule).

``bundle.json`` is not signed: it only names the product role whose metadata
to read and the release the bundle carries. Both must be what the signed
metadata says, or the bundle is refused (issue 19, finding 6), and
``release verify`` and ``release publish`` decide through one function,
:func:`check_bundle`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, TargetFile, Targets

from pumpguard.fsutil import atomic_write_bytes, fsync_dir
from pumpguard.release import FIRMWARE_NAME, SBOM_NAME, ReleaseInfo
from sbom import build_firmware_sbom
from signer._bundle import FORMAT, FORMAT_VERSION, MANIFEST, Bundle, open_bundle, open_bundle_stream
from signer._signing import expiry, utcnow
from signer._tarstream import write_tar
from signer.errors import BundleError, RollbackError, SignerError
from signer.repository import OnlineSigners, Repository, RepoState, file_digest, verify_files
from signer.verification import (
    FileDigest,
    SignatureReport,
    VerifiedRelease,
    product_releases,
    signature_report,
)

__all__ = [
    "Bundle",
    "BundleReport",
    "check_bundle",
    "create_release",
    "open_bundle",
    "open_bundle_stream",
    "publish_bundle",
    "sign_bundle",
    "verify_bundle",
]


def create_release(
    *,
    repo: Repository,
    product: str,
    version: str,
    release_counter: int,
    hardware_ids: Sequence[str],
    firmware: Path,
    out: Path,
    components: Path | None = None,
    notes: str = "",
    supplier: str | None = None,
    tar: bool = False,
    now: datetime | None = None,
) -> Bundle:
    """Build an unsigned release bundle against the repository's current state.

    The product's next metadata lists the product's current releases plus this
    one, minus the oldest beyond the repository's release window.

    Raises:
        UnknownProductError: The repository has no such product.
        RollbackError: Version or counter does not exceed every published release.
        ReleaseContractError: A release field is invalid.
        BundleError: ``out`` exists or the firmware cannot be read.
    """
    now = now or utcnow()
    if out.exists():
        raise BundleError(f"{out} exists; choose a new bundle name")
    state = repo.state()
    current = state.product(product)
    try:
        fw = file_digest(firmware)
    except OSError as e:
        raise BundleError(f"cannot read firmware {firmware}: {e.strerror}") from e
    sbom_json = build_firmware_sbom(
        product=product,
        version=version,
        firmware_name=FIRMWARE_NAME,
        firmware_sha256=fw.sha256,
        firmware_size=fw.length,
        hardware_ids=list(hardware_ids),
        supplier=supplier,
        components_manifest=components,
        timestamp=now,
    )
    release = ReleaseInfo(
        product=product,
        version=version,
        release_counter=release_counter,
        hardware_ids=tuple(hardware_ids),
        sbom_sha256=hashlib.sha256(sbom_json).hexdigest(),
        notes=notes,
    )
    previous = product_releases(current)
    if previous and release.release_counter <= previous[-1].release_counter:
        raise RollbackError(
            f"release_counter {release_counter} must be greater than "
            f"{previous[-1].release_counter} of published {product} {previous[-1].version}"
        )
    if previous and release.semver <= max(r.semver for r in previous):
        raise RollbackError(f"version {version} must be greater than every published {product}")

    targets = dict(current.signed.targets) if current else {}
    targets[release.firmware_path] = TargetFile(
        fw.length, {"sha256": fw.sha256}, release.firmware_path, {"custom": release.to_custom()}
    )
    targets[release.sbom_path] = TargetFile.from_data(release.sbom_path, sbom_json, ["sha256"])
    window = repo.config.release_window
    for old in ([*previous, release])[:-window]:
        targets.pop(old.firmware_path, None)
        targets.pop(old.sbom_path, None)
    md = Metadata(
        Targets(
            version=current.signed.version + 1 if current else 1,
            expires=expiry(repo.config.expiry_for(product), now),
            targets=targets,
        )
    )

    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (staging / "metadata").mkdir()
        release_dir = staging / "targets" / product / version
        release_dir.mkdir(parents=True)
        shutil.copyfile(firmware, release_dir / FIRMWARE_NAME)
        if file_digest(release_dir / FIRMWARE_NAME) != fw:
            raise BundleError(f"{firmware} changed while the bundle was built")
        atomic_write_bytes(release_dir / SBOM_NAME, sbom_json)
        atomic_write_bytes(staging / "metadata" / f"{product}.json", md.to_bytes())
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "product": product,
            "version": version,
        }
        atomic_write_bytes(staging / MANIFEST, json.dumps(manifest, indent=2).encode() + b"\n")
        if tar:
            write_tar(staging, out)
            shutil.rmtree(staging)
        else:
            staging.replace(out)
            fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Bundle(out, product, version)


def sign_bundle(path: Path, signer: Signer) -> tuple[ReleaseInfo, str]:
    """Add one signature to a bundle's product metadata.

    The bundle is checked intact first, so nobody signs files other than the
    ones in front of them. Signing twice with the same key replaces the
    signature.

    Returns:
        The release signed and the signing keyid.

    Raises:
        BundleError: The bundle is not intact.
    """
    with open_bundle(path, write=True) as bundle:
        md = bundle.metadata()
        problems = bundle.check_intact(md)
        if problems:
            raise BundleError("refusing to sign an altered bundle: " + "; ".join(problems))
        md.sign(signer, append=True)
        atomic_write_bytes(bundle.metadata_path, md.to_bytes())
        return bundle.release(md), signer.public_key.keyid


@dataclass(frozen=True)
class BundleReport:
    """What ``release verify`` says about a bundle."""

    product: str
    version: str
    release_counter: int
    metadata_version: int
    signatures: SignatureReport
    problems: tuple[str, ...]
    publishable: bool
    refusal: str | None

    @property
    def intact(self) -> bool:
        """Whether every file matches the metadata."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-able dict (``--json``)."""
        return {
            "product": self.product,
            "version": self.version,
            "release_counter": self.release_counter,
            "metadata_version": self.metadata_version,
            "threshold": self.signatures.threshold,
            "threshold_met": self.signatures.verified,
            "signed_by": list(self.signatures.signed),
            "not_signed_by": list(self.signatures.unsigned),
            "unknown_signers": list(self.signatures.unknown),
            "intact": self.intact,
            "problems": list(self.problems),
            "publishable": self.publishable,
            "refusal": self.refusal,
        }


def check_bundle(
    bundle: Bundle, state: RepoState, now: datetime, md: Metadata[Targets] | None = None
) -> VerifiedRelease:
    """Decide whether ``bundle`` may be published onto ``state``.

    The one decision of ``release verify`` and ``release publish``:
    :func:`signer.repository.verify_files` on the bundle's files, with the
    release ``bundle.json`` names required to be the one the signed
    metadata adds. :meth:`signer.Repository.publish` runs the same function,
    with the same ``claimed_version``, on the copies it is about to publish.

    Raises:
        PublishRefusedError: The update fails a check.
        BundleError: The bundle is malformed, or its files or manifest are
            not the release its signed metadata adds.
        UnknownProductError: The repository has no such product.
    """
    md = md or bundle.metadata()
    files = bundle.files()
    digests: dict[str, FileDigest] = {p: file_digest(f) for p, f in files.items()}
    return verify_files(state, bundle.product, md, digests, files, now, bundle.version)


def verify_bundle(path: Path, repo: Repository, now: datetime | None = None) -> BundleReport:
    """Report signatures, threshold, integrity and publishability of a bundle.

    Publishable means :func:`check_bundle`, which ``release publish`` runs
    too, accepts it.
    """
    now = now or utcnow()
    state = repo.state()
    with open_bundle(path) as bundle:
        md = bundle.metadata()
        refusal: SignerError | None = None
        try:
            check_bundle(bundle, state, now, md)
        except SignerError as e:
            refusal = e
        try:
            release = bundle.release(md)
            report = signature_report(state.targets.signed, bundle.product, md)
        except SignerError as e:
            # Nothing to report on: say why publish refuses it, in its words.
            raise (refusal or e) from (refusal or e).__cause__
        return BundleReport(
            bundle.product,
            bundle.version,
            release.release_counter,
            md.signed.version,
            report,
            tuple(bundle.check_intact(md)),
            refusal is None,
            None if refusal is None else str(refusal),
        )


def publish_bundle(
    path: Path, repo: Repository, online: OnlineSigners, now: datetime | None = None
) -> VerifiedRelease:
    """Publish a signed bundle into a local repository.

    :meth:`signer.Repository.publish` decides as :func:`check_bundle` does
    (``release verify``): the same :func:`signer.repository.verify_files`
    with the version ``bundle.json`` names, run once, under the repository
    lock, on the copies it then publishes.

    Raises:
        PublishRefusedError: The bundle fails a check; nothing was written.
        BundleError: The bundle is malformed.
    """
    now = now or utcnow()
    with open_bundle(path) as bundle:
        md = bundle.metadata()
        return repo.publish(
            bundle.product, md, bundle.files(), online, now, claimed_version=bundle.version
        )
