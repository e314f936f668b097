"""Release bundles: what release engineers pass between them and publish.

A bundle is a directory, or the same tree as one ``.tar`` file::

    bundle.json                     format, product, version
    metadata/<product>.json         the product role's next metadata (signed by
                                    each release engineer in turn)
    targets/<P>/<V>/firmware.img    the release's files
    targets/<P>/<V>/sbom.cdx.json

``release sign`` needs only the bundle and one key, so the second signature can
be added on another person's machine (the two-person release rule).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer
from tuf.api.exceptions import RepositoryError as TufRepositoryError
from tuf.api.metadata import Metadata, TargetFile, Targets

from pumpguard.errors import ReleaseContractError
from pumpguard.fsutil import atomic_write_bytes, fsync_dir
from pumpguard.release import FIRMWARE_NAME, SBOM_NAME, ReleaseInfo, validate_product
from sbom import SbomError, bound_firmware_sha256, build_firmware_sbom
from signer._signing import expiry, utcnow
from signer.errors import BundleError, PublishRefusedError, RollbackError, SignerError
from signer.repository import OnlineSigners, Repository, file_digest
from signer.verification import (
    FileDigest,
    SignatureReport,
    VerifiedRelease,
    product_releases,
    signature_report,
    verify_release_update,
)

__all__ = [
    "Bundle",
    "BundleReport",
    "create_release",
    "open_bundle",
    "publish_bundle",
    "sign_bundle",
    "verify_bundle",
]

MANIFEST = "bundle.json"
FORMAT = "pumpguard-release-bundle"
FORMAT_VERSION = 1
_MAX_METADATA = 16 << 20
_MAX_MEMBERS = 64


@dataclass(frozen=True)
class Bundle:
    """An opened bundle (always a directory; tar bundles are unpacked)."""

    root: Path
    product: str
    version: str

    @property
    def metadata_path(self) -> Path:
        """The product role's next metadata inside the bundle."""
        return self.root / "metadata" / f"{self.product}.json"

    def metadata(self) -> Metadata[Targets]:
        """Parse the bundle's product metadata.

        Raises:
            BundleError: It is missing or not targets metadata.
        """
        try:
            data = self.metadata_path.read_bytes()
            if len(data) > _MAX_METADATA:
                raise BundleError(f"{self.metadata_path.name} is larger than {_MAX_METADATA} bytes")
            md: Metadata[Any] = Metadata.from_bytes(data)
        except FileNotFoundError as e:
            raise BundleError(f"bundle lacks metadata/{self.product}.json") from e
        except (OSError, ValueError, TufRepositoryError) as e:
            # python-tuf raises DeserializationError (a tuf RepositoryError, not a
            # ValueError) for bytes that are not JSON or not metadata; the cause
            # says why.
            raise BundleError(
                f"metadata/{self.product}.json is not TUF metadata: {_one_line(e)}"
            ) from e
        if not isinstance(md.signed, Targets):
            raise BundleError(f"metadata/{self.product}.json is not targets metadata")
        return md

    def files(self) -> dict[str, Path]:
        """Every file under ``targets/``, by target path."""
        base = self.root / "targets"
        out = {}
        for path in sorted(base.rglob("*")):
            if path.is_symlink():
                raise BundleError(f"bundle holds a symbolic link: {path.relative_to(self.root)}")
            if path.is_file():
                out[path.relative_to(base).as_posix()] = path
        return out

    def release(self, md: Metadata[Targets] | None = None) -> ReleaseInfo:
        """The release the bundle carries, from its firmware target."""
        md = md or self.metadata()
        path = f"{self.product}/{self.version}/{FIRMWARE_NAME}"
        target = md.signed.targets.get(path)
        if target is None:
            raise BundleError(f"the bundle's metadata does not list {path}")
        try:
            return ReleaseInfo.from_custom(target.custom, path)
        except ReleaseContractError as e:
            raise BundleError(f"{path}: {e}") from e

    def check_intact(self, md: Metadata[Targets] | None = None) -> list[str]:
        """Problems with the bundle's files; an empty list when it is intact.

        Every file must be a target of the metadata with that length and sha256,
        the release's firmware and SBOM must both be there, and the SBOM must
        describe this firmware.
        """
        md = md or self.metadata()
        problems = []
        files = self.files()
        for path, local in files.items():
            target = md.signed.targets.get(path)
            if target is None:
                problems.append(f"{path} is not a target of the metadata")
                continue
            digest = file_digest(local)
            if digest.length != target.length or digest.sha256 != target.hashes.get("sha256"):
                problems.append(f"{path} does not match its length and sha256")
        try:
            release = self.release(md)
        except BundleError as e:
            return [*problems, str(e)]
        for path in (release.firmware_path, release.sbom_path):
            if path not in files:
                problems.append(f"bundle lacks {path}")
        if not problems:
            try:
                bound = bound_firmware_sha256(files[release.sbom_path].read_bytes())
            except SbomError as e:
                problems.append(f"{release.sbom_path}: {e}")
            else:
                if bound != md.signed.targets[release.firmware_path].hashes.get("sha256"):
                    problems.append(f"{release.sbom_path} does not describe this firmware")
        return problems


def _one_line(e: BaseException) -> str:
    """``e`` and its cause, if any, as one line of text."""
    text = str(e)
    if e.__cause__ is not None:
        text = f"{text} ({type(e.__cause__).__name__}: {e.__cause__})"
    return " ".join(text.split())


def _read_manifest(root: Path) -> Bundle:
    try:
        raw = json.loads((root / MANIFEST).read_bytes())
    except FileNotFoundError as e:
        raise BundleError(f"{root} is not a release bundle (no {MANIFEST})") from e
    except (OSError, ValueError) as e:
        raise BundleError(f"{MANIFEST} is not valid JSON: {e}") from e
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise BundleError(f"{MANIFEST} is not a {FORMAT} manifest")
    if raw.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"bundle format version {raw.get('format_version')!r} is not supported")
    try:
        product = validate_product(raw.get("product"))
    except ReleaseContractError as e:
        raise BundleError(str(e)) from e
    version = raw.get("version")
    if not isinstance(version, str) or "/" in version or version in {"", ".", ".."}:
        raise BundleError(f"{MANIFEST} names an invalid version {version!r}")
    return Bundle(root, product, version)


@contextlib.contextmanager
def open_bundle(path: Path, *, write: bool = False) -> Iterator[Bundle]:
    """Open a bundle directory or ``.tar`` file.

    A tar bundle is unpacked into a private temporary directory beside it (so
    an upload in the server's data folder is unpacked on the same file system,
    not in a small /tmp): regular files only, no links, nothing outside it,
    and no more bytes than the archive holds (no sparse-file bombs). With
    ``write`` it is packed again and atomically replaces the original when the
    block ends without error.

    Raises:
        BundleError: ``path`` is not a bundle.
    """
    if path.is_dir():
        yield _read_manifest(path)
        return
    if not path.is_file():
        raise BundleError(f"bundle {path} does not exist")
    archive_size = path.stat().st_size
    with tempfile.TemporaryDirectory(prefix=".pumpguard-bundle-", dir=path.parent) as tmp:
        root = Path(tmp) / "bundle"
        root.mkdir()
        try:
            with tarfile.open(path, "r:") as tar:
                members = tar.getmembers()
                if len(members) > _MAX_MEMBERS:
                    raise BundleError(f"bundle has more than {_MAX_MEMBERS} members")
                for member in members:
                    if not (member.isfile() or member.isdir()) or member.issparse():
                        raise BundleError(f"bundle member {member.name!r} is not a regular file")
                # A plain tar stores every byte it extracts, so more content
                # than the archive's size means a forged header.
                if sum(m.size for m in members) > archive_size:
                    raise BundleError("bundle members claim more bytes than the archive holds")
                # The "data" filter refuses absolute paths, '..', links and
                # device files (CVE-2007-4559 class of attacks).
                tar.extractall(root, filter="data")
        except (tarfile.TarError, OSError) as e:
            raise BundleError(f"{path} is not a readable bundle tar: {e}") from e
        bundle = _read_manifest(root)
        yield bundle
        if write:
            _write_tar(root, path)


def _write_tar(root: Path, dest: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            with tarfile.open(fileobj=f, mode="w:", format=tarfile.PAX_FORMAT) as tar:
                for item in sorted(root.rglob("*")):
                    if item.is_file():
                        info = tar.gettarinfo(str(item), item.relative_to(root).as_posix())
                        # Who built the bundle is none of the tar's business.
                        info.uid = info.gid = 0
                        info.uname = info.gname = ""
                        info.mode = 0o644
                        with item.open("rb") as src:
                            tar.addfile(info, src)
            f.flush()
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        tmp.replace(dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)


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
            _write_tar(staging, out)
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


def verify_bundle(path: Path, repo: Repository, now: datetime | None = None) -> BundleReport:
    """Report signatures, threshold, integrity and publishability of a bundle."""
    now = now or utcnow()
    state = repo.state()
    with open_bundle(path) as bundle:
        md = bundle.metadata()
        release = bundle.release(md)
        report = signature_report(state.targets.signed, bundle.product, md)
        problems = tuple(bundle.check_intact(md))
        refusal = None
        try:
            _verify_against(bundle, md, state, now)
        except SignerError as e:
            refusal = str(e)
        return BundleReport(
            bundle.product,
            bundle.version,
            release.release_counter,
            md.signed.version,
            report,
            problems,
            refusal is None,
            refusal,
        )


def _verify_against(
    bundle: Bundle, md: Metadata[Targets], state: Any, now: datetime
) -> VerifiedRelease:
    files = bundle.files()
    digests: dict[str, FileDigest] = {p: file_digest(f) for p, f in files.items()}
    sbom = files.get(f"{bundle.product}/{bundle.version}/{SBOM_NAME}")
    return verify_release_update(
        targets=state.targets.signed,
        product=bundle.product,
        current=state.product(bundle.product),
        new=md,
        files=digests,
        sbom_json=sbom.read_bytes() if sbom else b"",
        now=now,
    )


def publish_bundle(
    path: Path, repo: Repository, online: OnlineSigners, now: datetime | None = None
) -> VerifiedRelease:
    """Publish a signed bundle into a local repository.

    Raises:
        PublishRefusedError: The bundle fails a check; nothing was written.
        BundleError: The bundle is malformed.
    """
    with open_bundle(path) as bundle:
        md = bundle.metadata()
        if md.signed.targets is None:
            raise PublishRefusedError("bundle metadata lists no targets")
        return repo.publish(bundle.product, md, bundle.files(), online, now)
