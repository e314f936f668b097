"""Checks a release update against the repository, free of I/O.

:func:`verify_release_update` is the single decision of whether a product
role's next metadata may be published. The local publish and the server's
upload endpoint both call it after reading their inputs, so the rules cannot
drift apart (python-tuf's TrustedMetadataSet is the model: logic here, I/O in
:mod:`signer.repository`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from tuf.api.metadata import DelegatedRole, Metadata, TargetFile, Targets

from pumpguard.errors import ReleaseContractError
from pumpguard.release import CUSTOM_KEY, FIRMWARE_NAME, SBOM_NAME, ReleaseInfo, split_target_path
from sbom import SbomError, bound_firmware_sha256
from signer._keymaterial import key_material
from signer.errors import (
    BundleError,
    HashMismatchError,
    PathOutsideDelegationError,
    PublishRefusedError,
    RollbackError,
    ThresholdError,
    UnknownProductError,
)

__all__ = [
    "FileDigest",
    "SignatureReport",
    "VerifiedRelease",
    "product_releases",
    "signature_report",
    "verify_release_update",
]


@dataclass(frozen=True)
class FileDigest:
    """Length and sha256 of a file, measured by the I/O layer."""

    length: int
    sha256: str


@dataclass(frozen=True)
class SignatureReport:
    """Who signed a product role's metadata, as the delegation sees it.

    Attributes:
        threshold: Signatures the delegation requires.
        signed: Keyids of delegated keys with a valid signature.
        unsigned: Keyids of delegated keys without a valid signature.
        unknown: Keyids of signatures by keys the delegation does not name;
            they never count.
    """

    threshold: int
    signed: tuple[str, ...]
    unsigned: tuple[str, ...]
    unknown: tuple[str, ...]

    @property
    def verified(self) -> bool:
        """Whether the threshold is met."""
        return len(self.signed) >= self.threshold


@dataclass(frozen=True)
class VerifiedRelease:
    """A release update that passed every check.

    Attributes:
        release: The new release's contract fields.
        new_targets: The targets the update adds (firmware and SBOM).
        removed_targets: Paths of older targets the update drops.
        signatures: The signature report.
    """

    release: ReleaseInfo
    new_targets: Mapping[str, TargetFile]
    removed_targets: tuple[str, ...]
    signatures: SignatureReport


def delegation_for(targets: Targets, product: str) -> DelegatedRole:
    """The product's delegated role in top-level targets.

    Raises:
        UnknownProductError: targets does not delegate to ``product``.
    """
    roles = targets.delegations.roles if targets.delegations else None
    if not roles or product not in roles:
        raise UnknownProductError(f"the repository has no product {product!r}")
    return roles[product]


def signature_report(targets: Targets, product: str, md: Metadata[Targets]) -> SignatureReport:
    """Report which keys signed ``md`` for ``product`` (no exception on shortfall)."""
    role = delegation_for(targets, product)
    result = targets.get_verification_result(product, md.signed_bytes, md.signatures)
    unknown = tuple(sorted(k for k in md.signatures if k not in role.keyids))
    return SignatureReport(
        threshold=role.threshold,
        signed=tuple(sorted(result.signed)),
        unsigned=tuple(sorted(result.unsigned)),
        unknown=unknown,
    )


def product_releases(md: Metadata[Targets] | None) -> list[ReleaseInfo]:
    """The releases listed in a product role's metadata, oldest first."""
    if md is None:
        return []
    releases = [
        ReleaseInfo.from_custom(t.unrecognized_fields.get("custom"), path)
        for path, t in md.signed.targets.items()
        if path.endswith("/" + FIRMWARE_NAME)
        and isinstance(t.unrecognized_fields.get("custom"), dict)
        and CUSTOM_KEY in t.unrecognized_fields["custom"]
    ]
    return sorted(releases, key=lambda r: r.release_counter)


def verify_release_update(
    *,
    targets: Targets,
    product: str,
    current: Metadata[Targets] | None,
    new: Metadata[Targets],
    files: Mapping[str, FileDigest],
    sbom_json: bytes,
    now: datetime,
    claimed_version: str | None = None,
) -> VerifiedRelease:
    """Decide whether ``new`` may replace ``current`` as ``product``'s metadata.

    Args:
        targets: The repository's current top-level targets (the delegator).
        product: The product role the update is for.
        current: The product's current published metadata, None before its
            first release.
        new: The proposed next metadata, with its signatures.
        files: Length and sha256 of every file the bundle carries, by target path.
        sbom_json: The content of the new release's SBOM file.
        now: The reference time for expiry.
        claimed_version: The version an unsigned manifest (``bundle.json``)
            says the update releases; if given, it must be the version of
            the release the signed metadata adds.

    Returns:
        The verified release.

    Raises:
        UnknownProductError: No delegation for ``product``.
        ThresholdError: Too few valid signatures by delegated keys.
        RollbackError: Metadata version, release version or release counter
            does not increase.
        PathOutsideDelegationError: A target lies outside ``product/*``.
        HashMismatchError: A file does not match its target, or the SBOM is
            not bound to the firmware.
        PublishRefusedError: Any other reason the update cannot be published.
        BundleError: The bundle carries files the metadata does not list, or
            lacks files it lists, or ``claimed_version`` is not the release
            the metadata adds.
    """
    role = delegation_for(targets, product)

    # TUF spec 5.6.3: a delegated role's metadata needs a threshold of
    # signatures by the keys its delegator names. Signatures by other keys are
    # never counted (threat TUF-ARBITRARY, the two-person release rule).
    report = signature_report(targets, product, new)
    if not report.verified:
        extra = (
            f"; {len(report.unknown)} signature(s) by keys the delegation does not name "
            "were not counted"
            if report.unknown
            else ""
        )
        raise ThresholdError(
            f"{product} release is signed by {len(report.signed)} of the "
            f"{report.threshold} required keys{extra}"
        )
    # python-tuf counts keyids; one public key written two ways has two. Count
    # keys, so a delegation that lists one key twice cannot let one person
    # release alone (threat SGN-KEYID-FORGERY).
    delegated = targets.delegations.keys if targets.delegations else {}
    try:
        people = {key_material(delegated[k]) for k in report.signed}
    except (KeyError, ValueError) as e:
        raise ThresholdError(f"{product}: a delegated key is unusable: {e}") from e
    if len(people) < report.threshold:
        raise ThresholdError(
            f"{product} release is signed under {len(report.signed)} keyids but by only "
            f"{len(people)} distinct key(s) of the {report.threshold} required: the delegation "
            "lists one key twice"
        )

    expected_version = 1 if current is None else current.signed.version + 1
    # TUF spec 5.6.5: metadata versions only grow (rollback attack).
    if new.signed.version != expected_version:
        raise RollbackError(
            f"{product} metadata version {new.signed.version} is not the next "
            f"version {expected_version}; the bundle was built against an older repository"
        )
    if new.signed.is_expired(now):
        raise PublishRefusedError(
            f"{product} metadata expired at {new.signed.expires:%Y-%m-%dT%H:%M:%SZ}"
        )
    if new.signed.delegations is not None:
        raise PublishRefusedError(f"{product} metadata may not delegate further")

    # TUF spec 5.6.7.2: a terminating delegation restricts the paths a role may
    # sign for; enforce it at publish so no pump ever sees such a target.
    for path in new.signed.targets:
        if not role.is_delegated_path(path):
            raise PathOutsideDelegationError(
                f"target {path!r} is outside {product}'s delegated paths {role.paths}"
            )

    old_targets = current.signed.targets if current else {}
    for path, old in old_targets.items():
        if path in new.signed.targets and new.signed.targets[path] != old:
            raise PublishRefusedError(f"the update changes the published target {path!r}")
    added = {p: t for p, t in new.signed.targets.items() if p not in old_targets}
    removed = tuple(sorted(p for p in old_targets if p not in new.signed.targets))

    release = _the_new_release(product, added)
    # Everything is decided from the signed metadata; an unsigned name that
    # says otherwise is refused, not corrected (issue 19, finding 6): what the
    # uploader, the log and the index are told is what pumps will install.
    if claimed_version is not None and claimed_version != release.version:
        raise BundleError(
            f"the bundle names version {claimed_version!r}, but its signed metadata "
            f"adds {product} {release.version}"
        )

    # Anti-rollback: the release contract's counter and version must exceed
    # every published release of the product (threat TUF-ROLLBACK).
    previous = product_releases(current)
    if previous:
        newest = previous[-1]
        if release.release_counter <= newest.release_counter:
            raise RollbackError(
                f"release_counter {release.release_counter} is not greater than "
                f"{newest.release_counter} of published {product} {newest.version}"
            )
        highest = max(previous, key=lambda r: r.semver)
        if release.semver <= highest.semver:
            raise RollbackError(
                f"version {release.version} is not greater than published "
                f"{product} {highest.version}"
            )

    _check_files(added, files)
    _check_sbom_binding(release, added, sbom_json)
    return VerifiedRelease(release, added, removed, report)


def _the_new_release(product: str, added: Mapping[str, TargetFile]) -> ReleaseInfo:
    """The one release an update adds: exactly its firmware and its SBOM."""
    firmware = [p for p in added if p.endswith("/" + FIRMWARE_NAME)]
    if len(firmware) != 1:
        raise PublishRefusedError(
            f"an update must add exactly one firmware target, this one adds {len(firmware)}"
        )
    try:
        release = ReleaseInfo.from_custom(
            added[firmware[0]].unrecognized_fields.get("custom"), firmware[0]
        )
        for path in added:
            split_target_path(path)
    except ReleaseContractError as e:
        raise PublishRefusedError(f"release metadata of {firmware[0]!r}: {e}") from e
    if release.product != product:
        raise PublishRefusedError(f"release of {release.product!r} signed as {product!r}")
    expected = {release.firmware_path, release.sbom_path}
    if set(added) != expected:
        unexpected = sorted(set(added) - expected) or sorted(expected - set(added))
        raise PublishRefusedError(
            f"an update must add exactly {sorted(expected)}; offending: {unexpected}"
        )
    return release


def _check_files(added: Mapping[str, TargetFile], files: Mapping[str, FileDigest]) -> None:
    extra = sorted(set(files) - set(added))
    if extra:
        raise BundleError(f"the bundle carries files its metadata does not add: {extra}")
    for path, target in added.items():
        digest = files.get(path)
        if digest is None:
            raise BundleError(f"the bundle lacks the file of target {path!r}")
        # TUF spec 5.7.3: length and hashes must match before anything is used.
        if digest.length != target.length or target.hashes.get("sha256") != digest.sha256:
            raise HashMismatchError(
                f"{path} does not match the length and sha256 its metadata records"
            )
        unsupported = set(target.hashes) - {"sha256"}
        if unsupported:
            raise PublishRefusedError(
                f"{path}: only sha256 hashes are accepted, not {sorted(unsupported)}"
            )


def _check_sbom_binding(
    release: ReleaseInfo, added: Mapping[str, TargetFile], sbom_json: bytes
) -> None:
    sbom_target = added[release.sbom_path]
    if sbom_target.hashes.get("sha256") != release.sbom_sha256:
        raise HashMismatchError(
            f"the release names SBOM sha256 {release.sbom_sha256[:12]}..., "
            "the SBOM target has another"
        )
    try:
        bound = bound_firmware_sha256(sbom_json)
    except SbomError as e:
        raise HashMismatchError(f"{release.sbom_path}: {e}") from e
    if bound != added[release.firmware_path].hashes.get("sha256"):
        raise HashMismatchError(
            f"{release.sbom_path} describes firmware {bound[:12]}..., not the release's firmware"
        )


def split_release_paths(paths: list[str]) -> dict[str, str]:
    """Map ``firmware``/``sbom`` to target paths (used by bundle listings)."""
    out = {}
    for path in paths:
        name = split_target_path(path)[2]
        if name == FIRMWARE_NAME:
            out["firmware"] = path
        elif name == SBOM_NAME:
            out["sbom"] = path
    return out
