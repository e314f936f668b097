"""Release-engineering side of pumpguard: keys, the TUF repository, release bundles.

The server and tools use these public names; everything else is internal. They
are imported on first use (:mod:`pumpguard.lazy`), so ``import signer`` loads
neither TUF nor the key tooling until a name is used.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from signer.bundle import (
        BundleReport,
        create_release,
        publish_bundle,
        sign_bundle,
        verify_bundle,
    )
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
    from signer.keys import (
        KeyType,
        PassphraseSource,
        generate_keypair,
        load_public_key,
        load_signer,
    )
    from signer.repository import OnlineSigners, RepoConfig, Repository, RepoState
    from signer.verification import (
        FileDigest,
        SignatureReport,
        VerifiedRelease,
        product_releases,
        verify_release_update,
    )
else:
    from pumpguard.lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "BundleReport": "signer.bundle",
            "create_release": "signer.bundle",
            "publish_bundle": "signer.bundle",
            "sign_bundle": "signer.bundle",
            "verify_bundle": "signer.bundle",
            "BundleError": "signer.errors",
            "HashMismatchError": "signer.errors",
            "KeyLoadError": "signer.errors",
            "PathOutsideDelegationError": "signer.errors",
            "PublishRefusedError": "signer.errors",
            "RepositoryError": "signer.errors",
            "RollbackError": "signer.errors",
            "SignerError": "signer.errors",
            "SigningKeyError": "signer.errors",
            "ThresholdError": "signer.errors",
            "UnknownProductError": "signer.errors",
            "KeyType": "signer.keys",
            "PassphraseSource": "signer.keys",
            "generate_keypair": "signer.keys",
            "load_public_key": "signer.keys",
            "load_signer": "signer.keys",
            "OnlineSigners": "signer.repository",
            "RepoConfig": "signer.repository",
            "Repository": "signer.repository",
            "RepoState": "signer.repository",
            "FileDigest": "signer.verification",
            "SignatureReport": "signer.verification",
            "VerifiedRelease": "signer.verification",
            "product_releases": "signer.verification",
            "verify_release_update": "signer.verification",
        },
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
