"""Release-engineering side of pumpguard: keys, the TUF repository, release bundles.

The server and tools use these public names; everything else is internal.
"""

from signer.bundle import BundleReport, create_release, publish_bundle, sign_bundle, verify_bundle
from signer.errors import (
    BundleError,
    HashMismatchError,
    KeyLoadError,
    PathOutsideDelegationError,
    PublishRefusedError,
    RepositoryError,
    RollbackError,
    SignerError,
    SigningKeyError,
    ThresholdError,
    UnknownProductError,
)
from signer.keys import KeyType, PassphraseSource, generate_keypair, load_public_key, load_signer
from signer.repository import OnlineSigners, RepoConfig, Repository, RepoState
from signer.verification import (
    FileDigest,
    SignatureReport,
    VerifiedRelease,
    product_releases,
    verify_release_update,
)

__all__ = [
    "BundleError",
    "BundleReport",
    "FileDigest",
    "HashMismatchError",
    "KeyLoadError",
    "KeyType",
    "OnlineSigners",
    "PassphraseSource",
    "PathOutsideDelegationError",
    "PublishRefusedError",
    "RepoConfig",
    "RepoState",
    "Repository",
    "RepositoryError",
    "RollbackError",
    "SignatureReport",
    "SignerError",
    "SigningKeyError",
    "ThresholdError",
    "UnknownProductError",
    "VerifiedRelease",
    "create_release",
    "generate_keypair",
    "load_public_key",
    "load_signer",
    "product_releases",
    "publish_bundle",
    "sign_bundle",
    "verify_bundle",
    "verify_release_update",
]
