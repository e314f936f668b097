"""What a public key is, independent of how its TUF ``keyval`` is written.

A TUF keyid is the sha256 of the key's canonical JSON, so one public key
written two ways (ed25519 hex in upper case, an ECDSA point compressed, PEM
wrapped differently, an extra ``keyval`` field) has two valid keyids, and
python-tuf counts a threshold by keyid. A threshold of 2 "distinct" keyids
could then be met by one person copying their own signature under the second
keyid (threat SGN-KEYID-FORGERY: the two-person release rule). Thresholds must
count keys, so keys are compared by :func:`key_material`.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from securesystemslib.signer import Key

__all__ = ["duplicate_keys", "key_material"]


def key_material(key: Key) -> bytes:
    """The key as DER SubjectPublicKeyInfo: equal for equal keys, whatever the encoding.

    Raises:
        ValueError: ``key`` is not a public key pumpguard understands.
    """
    public = key.keyval.get("public") if isinstance(key.keyval, dict) else None
    if not isinstance(public, str):
        raise ValueError(f"key {key.keyid[:12]} has no public key value")
    if key.keytype == "ed25519":
        raw = bytes.fromhex(public)
        crypto = ed25519.Ed25519PublicKey.from_public_bytes(raw)
        return crypto.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return load_pem_public_key(public.encode()).public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )


def duplicate_keys(keys: Iterable[Key]) -> list[tuple[str, str]]:
    """Pairs of keyids that name the same public key, first seen first.

    Raises:
        ValueError: A key is not a public key pumpguard understands.
    """
    seen: dict[bytes, str] = {}
    pairs = []
    for key in keys:
        material = key_material(key)
        if material in seen and seen[material] != key.keyid:
            pairs.append((seen[material], key.keyid))
        seen.setdefault(material, key.keyid)
    return pairs
