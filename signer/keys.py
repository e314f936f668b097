"""Signing keys: generation, encrypted storage and loading as TUF signers.

A key is stored as two files: ``NAME.key``, the private key as an encrypted
PKCS#8 PEM (readable only by its owner), and ``NAME.pub``, the public key in TUF
key format plus its ``keyid``. Every command that signs takes either such a
key file or a PKCS#11 URI; both become a securesystemslib ``Signer``.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import CryptoSigner, Key, Signer, SSlibKey

from pumpguard.fsutil import atomic_write_bytes, fsync_dir
from signer import _pkcs11
from signer._keymaterial import key_material
from signer.errors import KeyLoadError, SigningKeyError

__all__ = [
    "DEFAULT_PASSPHRASE_ENV",
    "KeyType",
    "PassphraseSource",
    "default_keyid",
    "generate_keypair",
    "load_public_key",
    "load_signer",
    "public_key_to_json",
    "write_public_key",
]

# Bandit B105 (hardcoded password) is suppressed: this is the name of the
# environment variable that holds the passphrase, not a passphrase.
DEFAULT_PASSPHRASE_ENV = "PUMPGUARD_PASSPHRASE"  # noqa: S105  # nosec B105
_MIN_PASSPHRASE = 8


class KeyType(StrEnum):
    """Key algorithms a release engineer may generate."""

    ED25519 = "ed25519"
    ECDSA_P256 = "ecdsa-p256"


@dataclass(frozen=True)
class PassphraseSource:
    """Where a key file's passphrase comes from.

    The passphrase is read from the environment variable ``env`` if it is set,
    otherwise asked for on the terminal when ``interactive`` and stdin is one.
    It is never logged or printed.
    """

    env: str = DEFAULT_PASSPHRASE_ENV
    interactive: bool = True

    def get(self, prompt: str, *, confirm: bool = False) -> bytes | None:
        """Return the passphrase, or None when none can be had."""
        value = os.environ.get(self.env)
        if value:
            return value.encode()
        if not (self.interactive and sys.stdin.isatty()):
            return None
        first = getpass.getpass(prompt)
        if confirm and getpass.getpass("Repeat passphrase: ") != first:
            raise SigningKeyError("the passphrases do not match")
        return first.encode() if first else None


def public_key_to_json(key: Key) -> dict[str, Any]:
    """Return the public key in TUF key format with its ``keyid`` added."""
    return {"keyid": key.keyid, **key.to_dict()}


def write_public_key(key: Key, path: Path) -> None:
    """Write ``key`` as a ``.pub`` file (TUF key format plus keyid)."""
    data = json.dumps(public_key_to_json(key), indent=2, sort_keys=True).encode() + b"\n"
    atomic_write_bytes(path, data)


def generate_keypair(
    out: Path,
    key_type: KeyType = KeyType.ED25519,
    passphrase: bytes | None = None,
    *,
    insecure_no_passphrase: bool = False,
) -> SSlibKey:
    """Generate a key pair and write ``OUT.key`` and ``OUT.pub``.

    Args:
        out: ``DIR/NAME``; ``DIR`` is created if missing.
        key_type: Algorithm of the new key.
        passphrase: Encrypts the private key (PKCS#8, best available encryption).
        insecure_no_passphrase: Allow writing the private key unencrypted.

    Returns:
        The new public key.

    Raises:
        SigningKeyError: No passphrase and unencrypted keys not allowed, the
            passphrase is too short, or either file already exists.
    """
    if passphrase is None and not insecure_no_passphrase:
        raise SigningKeyError(
            "refusing to write an unencrypted private key: give a passphrase "
            "(see --passphrase-env) or --insecure-no-passphrase"
        )
    if passphrase is not None and len(passphrase) < _MIN_PASSPHRASE:
        raise SigningKeyError(f"the passphrase must have at least {_MIN_PASSPHRASE} characters")
    key_path = out.with_name(out.name + ".key")
    pub_path = out.with_name(out.name + ".pub")
    for path in (key_path, pub_path):
        if path.exists():
            raise SigningKeyError(f"{path} exists; refusing to overwrite a key")

    private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
    if key_type is KeyType.ED25519:
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase is not None
        else serialization.NoEncryption()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public = SSlibKey.from_crypto(private.public_key())
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(key_path, pem, mode=0o600)
    write_public_key(public, pub_path)
    fsync_dir(out.parent)
    return public


def load_public_key(path: Path) -> SSlibKey:
    """Read a ``.pub`` file and check that its keyid is the key's own.

    Raises:
        KeyLoadError: The file is missing, not a TUF public key, or its keyid
            does not belong to the key.
    """
    try:
        data = json.loads(path.read_bytes())
        keyid = data.pop("keyid")
        key = SSlibKey.from_dict(keyid, data)
    except FileNotFoundError as e:
        raise KeyLoadError(f"public key {path} does not exist") from e
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise KeyLoadError(f"{path} is not a pumpguard public key file: {e}") from e
    if not isinstance(key, SSlibKey):
        raise KeyLoadError(f"{path} holds an unsupported key type")
    # A .pub file whose keyid was edited would let one key count twice towards a
    # threshold under two names; only the canonical keyid is accepted.
    canonical_id = default_keyid(key)
    if keyid != canonical_id:
        raise KeyLoadError(f"{path}: keyid {keyid} is not the key's own ({canonical_id})")
    # The keyid is the hash of the encoding, so the encoding must be the one
    # standard form too: the same key written another way (upper-case hex, a
    # compressed point, other PEM line breaks, extra fields) would have
    # another valid keyid (threat SGN-KEYID-FORGERY).
    try:
        standard = SSlibKey.from_crypto(
            serialization.load_der_public_key(key_material(key)), scheme=key.scheme
        )
    except (ValueError, TypeError) as e:
        raise KeyLoadError(f"{path} holds an unusable public key: {e}") from e
    if (standard.keytype, standard.keyval) != (key.keytype, key.keyval):
        raise KeyLoadError(
            f"{path}: the key is not written in its standard form, so its keyid is not the"
            " one other tools compute; export it again with `pumpguard keys`"
        )
    return key


def default_keyid(key: Key) -> str:
    """The TUF default keyid: sha256 over the key's canonical JSON."""
    canonical = encode_canonical(
        {"keytype": key.keytype, "scheme": key.scheme, "keyval": key.keyval}
    )
    if not isinstance(canonical, str):
        raise SigningKeyError("cannot encode the key as canonical JSON")
    return hashlib.sha256(canonical.encode()).hexdigest()


def load_signer(spec: str, passphrase: PassphraseSource | None = None) -> Signer:
    """Load a signer from a key file path or a PKCS#11 URI.

    Args:
        spec: Path to a ``.key`` file, or a ``pkcs11:`` / ``hsm:`` URI.
        passphrase: Where the key file's passphrase comes from.

    Raises:
        KeyLoadError: The key cannot be read or decrypted.
    """
    if _pkcs11.is_pkcs11_uri(spec):
        return _pkcs11.load_pkcs11_signer(spec)
    path = Path(spec)
    try:
        pem = path.read_bytes()
    except FileNotFoundError as e:
        raise KeyLoadError(f"private key {path} does not exist") from e
    except OSError as e:
        raise KeyLoadError(f"cannot read private key {path}: {e.strerror}") from e
    secret: bytes | None = None
    if b"ENCRYPTED" in pem:
        source = passphrase or PassphraseSource()
        secret = source.get(f"Passphrase for {path.name}: ")
        if secret is None:
            raise KeyLoadError(f"{path} is encrypted: set {source.env} or run on a terminal")
    try:
        private = serialization.load_pem_private_key(pem, secret)
    except (ValueError, TypeError) as e:
        # cryptography says ValueError for a wrong passphrase and for garbage;
        # never echo the passphrase or the key bytes.
        raise KeyLoadError(f"cannot decrypt or parse {path} (wrong passphrase?)") from e
    if not isinstance(private, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyLoadError(f"{path}: only ed25519 and ECDSA P-256 keys are supported")
    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))
