"""Errors of the signer package: one base, families beneath it."""

from __future__ import annotations

from pumpguard.errors import PumpguardError

__all__ = [
    "BundleError",
    "HashMismatchError",
    "KeyLoadError",
    "PathOutsideDelegationError",
    "PublishRefusedError",
    "RepositoryError",
    "RollbackError",
    "SignerError",
    "SigningKeyError",
    "ThresholdError",
    "UnknownProductError",
]


class SignerError(PumpguardError):
    """Base of every error the signer package raises."""


class SigningKeyError(SignerError):
    """A key cannot be generated, written, read or used."""

    exit_code = 2


class KeyLoadError(SigningKeyError):
    """A key file or PKCS#11 URI cannot be loaded (wrong passphrase, no token...)."""


class RepositoryError(SignerError):
    """The repository is missing, malformed, or an operation on it is invalid."""


class UnknownProductError(RepositoryError):
    """The repository has no delegation for the product."""


class BundleError(SignerError):
    """A release bundle is malformed, incomplete or altered."""

    exit_code = 4


class PublishRefusedError(SignerError):
    """A release cannot be published; the repository is left unchanged."""

    exit_code = 4


class ThresholdError(PublishRefusedError):
    """Too few valid signatures by the keys the delegation names."""


class HashMismatchError(PublishRefusedError):
    """A file does not match the length or hashes its metadata records."""


class PathOutsideDelegationError(PublishRefusedError):
    """A target path is not within the product's delegated paths."""


class RollbackError(PublishRefusedError):
    """A metadata version, release version or release counter does not increase."""
