"""Reading a release bundle: a directory or a tar, its unsigned manifest read strictly.

A bundle is a directory, or the same tree as one ``.tar`` file::

    bundle.json                     format, product, version
    metadata/<product>.json         the product role's next metadata
    targets/<P>/<V>/firmware.img    the release's files
    targets/<P>/<V>/sbom.cdx.json

``bundle.json`` is not signed: it only names the product role whose metadata
to read and the release the bundle carries, and is read as hostile input.
The public names are those of :mod:`signer.bundle`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tuf.api.exceptions import RepositoryError as TufRepositoryError
from tuf.api.metadata import Metadata, Targets

from pumpguard.errors import ReleaseContractError
from pumpguard.fsutil import FileTooLargeError, read_capped
from pumpguard.jsonutil import StrictJSONError, loads_strict
from pumpguard.release import FIRMWARE_NAME, ReleaseInfo, SemVer, validate_product
from sbom import SbomError, bound_firmware_sha256
from signer._tarstream import unpack_tar, write_tar
from signer.errors import BundleError
from signer.repository import file_digest

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "MAX_MEMBERS",
    "Bundle",
    "open_bundle",
    "open_bundle_stream",
]

MANIFEST = "bundle.json"
FORMAT = "pumpguard-release-bundle"
FORMAT_VERSION = 1
#: Members a bundle tar may have; it has a handful (threat SRV-DOS).
MAX_MEMBERS = 64
_FIELDS = frozenset({"format", "format_version", "product", "version"})
_MAX_MANIFEST = 64 << 10
_MAX_METADATA = 16 << 20
_TAR = "the bundle tar"


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
            # Read strictly first: python-tuf's json.loads keeps the last of
            # two equal keys and recurses once per level (threat SRV-INPUT).
            loads_strict(data)
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

    def _listing(self) -> dict[str, Path]:
        base = self.root / "targets"
        out = {}
        for path in sorted(base.rglob("*")):
            if path.is_symlink():
                raise BundleError(f"bundle holds a symbolic link: {path.relative_to(self.root)}")
            if path.is_file():
                out[path.relative_to(base).as_posix()] = path
        return out

    def _outside(self, files: dict[str, Path]) -> list[str]:
        prefix = f"{self.product}/{self.version}/"
        return sorted(p for p in files if not p.startswith(prefix))

    def files(self) -> dict[str, Path]:
        """Every file under ``targets/``, by target path.

        Raises:
            BundleError: A file lies outside the release ``bundle.json``
                names. Publishing checks that the files are exactly the
                release the signed metadata adds, so every caller (the
                server's too) refuses a manifest that names another release.
        """
        out = self._listing()
        outside = self._outside(out)
        if outside:
            raise BundleError(
                f"the bundle carries {outside} outside {self.product}/{self.version}/, "
                f"the release its {MANIFEST} names"
            )
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
        files = self._listing()
        problems = [
            f"{path} lies outside {self.product}/{self.version}/, the release {MANIFEST} names"
            for path in self._outside(files)
        ]
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


def _read_manifest(root: Path, where: str) -> Bundle:
    """The bundle ``root`` holds, by its ``bundle.json``, read strictly.

    The manifest is unsigned, so it is read as hostile input: strict JSON
    (no duplicate keys, no deep nesting: threat SRV-INPUT), exactly its four
    fields with exactly their types (``true`` is not the format version 1),
    a product name and a semantic version, which keep newlines, NULs and
    backslashes out of paths, logs and the database.
    """
    try:
        # Named without its folder: the server answers this message.
        data = read_capped(root / MANIFEST, _MAX_MANIFEST, MANIFEST)
    except FileTooLargeError as e:
        raise BundleError(str(e)) from e
    except FileNotFoundError as e:
        raise BundleError(f"{where} is not a release bundle (no {MANIFEST})") from e
    except OSError as e:
        raise BundleError(f"cannot read the {MANIFEST} of {where}: {e.strerror}") from e
    try:
        raw = loads_strict(data)
    except StrictJSONError as e:
        raise BundleError(f"{MANIFEST} is not valid JSON: {e}") from e
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise BundleError(f"{MANIFEST} is not a {FORMAT} manifest")
    unknown = sorted(raw.keys() - _FIELDS)
    if unknown:
        raise BundleError(f"{MANIFEST} has unknown fields {unknown}")
    format_version = raw.get("format_version")
    # type() and not isinstance(): bool is an int, and 1.0 == 1.
    if type(format_version) is not int or format_version != FORMAT_VERSION:
        raise BundleError(
            f"bundle format version {format_version!r} is not supported "
            f"(this pumpguard reads the integer {FORMAT_VERSION})"
        )
    try:
        product = validate_product(raw.get("product"))
        version = raw.get("version")
        SemVer.parse(version)  # refuses anything but a semver string
    except ReleaseContractError as e:
        raise BundleError(f"{MANIFEST}: {e}") from e
    return Bundle(root, product, str(version))


@contextlib.contextmanager
def open_bundle_stream(
    stream: BinaryIO, workdir: Path, *, max_bytes: int, max_members: int = MAX_MEMBERS
) -> Iterator[Bundle]:
    """Unpack a bundle tar read sequentially from ``stream`` and open it.

    The tar is unpacked into a new private (0700) temporary directory under
    ``workdir``, removed when the block exits, whether it succeeds or fails.
    Members are counted and sizes checked as each header is read, before
    anything more is read (threat SRV-DOS); only regular files and
    directories are unpacked, and absolute paths, ``..`` components and names
    given twice (a second ``bundle.json``) are refused, never rewritten
    (threat SGN-BUNDLE-TRAVERSAL). Errors name members, never ``workdir``.

    Args:
        stream: The tar, read front to back once (never seeked).
        workdir: Where to create the temporary directory.
        max_bytes: Most bytes read from ``stream``.
        max_members: Most members (files and directories) accepted.

    Yields:
        The opened bundle, its ``bundle.json`` read as :func:`open_bundle` reads it.

    Raises:
        BundleError: The tar or its manifest is malformed or beyond a bound.
        OSError: Unpacking failed for a reason of this machine (disk full);
            the message names no path.
    """
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".pumpguard-bundle-", dir=workdir))
    except OSError as e:
        raise OSError(e.errno, f"cannot create a directory to unpack {_TAR}: {e.strerror}") from e
    try:
        unpack_tar(stream, tmp, max_bytes=max_bytes, max_members=max_members)
        yield _read_manifest(tmp, _TAR)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def open_bundle(path: Path, *, write: bool = False) -> Iterator[Bundle]:
    """Open a bundle directory or ``.tar`` file.

    A tar bundle is unpacked by :func:`open_bundle_stream`, the reader the
    server's upload uses, into a private temporary directory beside it (so an
    upload in the server's data folder is unpacked on the same file system,
    not in a small /tmp), reading no more bytes than the file holds. With
    ``write`` it is packed again and atomically replaces the original when
    the block ends without error.

    Raises:
        BundleError: ``path`` is not a bundle.
    """
    if path.is_dir():
        yield _read_manifest(path, str(path))
        return
    if not path.is_file():
        raise BundleError(f"bundle {path} does not exist")
    try:
        f = path.open("rb")
    except OSError as e:
        raise BundleError(f"cannot read {_TAR}: {e.strerror}") from e
    with f:
        size = os.fstat(f.fileno()).st_size
        with open_bundle_stream(f, path.parent, max_bytes=size) as bundle:
            yield bundle
            if write:
                write_tar(bundle.root, path)
