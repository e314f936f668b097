"""One public key written two ways never counts as two people (threat SGN-KEYID-FORGERY).

A TUF keyid is the hash of the key's JSON encoding, so the same key in
another encoding (upper-case hex, an extra keyval field, a compressed EC
point, other PEM line breaks) has another valid keyid, and python-tuf counts
thresholds by keyid. Each test builds such an alias with a keyid that is
correct for its encoding, so only the key-material check can refuse it.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from securesystemslib.signer import Key, Signature, Signer, SSlibKey

import signer.repository
from repo_support import PASSPHRASE, RepoEnv
from signer.bundle import open_bundle, publish_bundle
from signer.errors import KeyLoadError, RepositoryError, ThresholdError
from signer.keys import KeyType, default_keyid, generate_keypair, load_public_key
from signer.repository import Repository

_EC_SPKI_PREFIX = bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200")


def _upper_hex(doc: dict[str, Any]) -> None:
    doc["keyval"] = {"public": doc["keyval"]["public"].upper()}


def _extra_field(doc: dict[str, Any]) -> None:
    doc["keyval"] = {**doc["keyval"], "private": ""}


def _compressed_point(doc: dict[str, Any]) -> None:
    crypto = serialization.load_pem_public_key(doc["keyval"]["public"].encode())
    point = crypto.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    body = base64.encodebytes(_EC_SPKI_PREFIX + point).decode()
    doc["keyval"] = {"public": f"-----BEGIN PUBLIC KEY-----\n{body}-----END PUBLIC KEY-----\n"}


def _rewrapped_pem(doc: dict[str, Any]) -> None:
    lines = doc["keyval"]["public"].strip().splitlines()
    body = "".join(lines[1:-1])
    wrapped = "\n".join(body[i : i + 40] for i in range(0, len(body), 40))
    doc["keyval"] = {"public": f"{lines[0]}\n{wrapped}\n{lines[-1]}\n"}


def _alias_file(pub: Path, out: Path, rewrite: Callable[[dict[str, Any]], None]) -> Path:
    """``pub`` rewritten by ``rewrite``, with the keyid that encoding hashes to."""
    doc = json.loads(pub.read_text())
    doc.pop("keyid")
    rewrite(doc)
    doc["keyid"] = default_keyid(SSlibKey.from_dict("x", copy.deepcopy(doc)))
    out.write_text(json.dumps(doc))
    return out


def _alias_key(pub: Path) -> SSlibKey:
    """An ed25519 alias (upper-case hex) as a Key object, as a library caller could pass it."""
    doc = json.loads(pub.read_text())
    doc.pop("keyid")
    _upper_hex(doc)
    keyid = default_keyid(SSlibKey.from_dict("x", copy.deepcopy(doc)))
    return SSlibKey.from_dict(keyid, doc)


class _Relabel:
    """The holder of a key re-labels their own signature under an alias keyid."""

    def __init__(self, real: Signer, alias: Key) -> None:
        self.real = real
        self.public_key = alias

    def sign(self, payload: bytes) -> Signature:
        return Signature(self.public_key.keyid, self.real.sign(payload).signature)


@pytest.mark.parametrize(
    ("key_type", "rewrite"),
    [
        (KeyType.ED25519, _upper_hex),
        (KeyType.ED25519, _extra_field),
        (KeyType.ECDSA_P256, _compressed_point),
        (KeyType.ECDSA_P256, _rewrapped_pem),
    ],
    ids=["ed25519-upper-hex", "ed25519-extra-field", "ecdsa-compressed", "ecdsa-rewrapped"],
)
def test_public_key_written_another_way_is_rejected(
    tmp_path: Path, key_type: KeyType, rewrite: Callable[[dict[str, Any]], None]
) -> None:
    generate_keypair(tmp_path / "qa", key_type, PASSPHRASE.encode())
    alias = _alias_file(tmp_path / "qa.pub", tmp_path / "alias.pub", rewrite)
    assert load_public_key(tmp_path / "qa.pub")  # the standard form loads
    with pytest.raises(KeyLoadError, match="standard form"):
        load_public_key(alias)


def test_one_key_under_two_keyids_cannot_make_a_product_threshold(repo_env: RepoEnv) -> None:
    env = repo_env
    real = load_public_key(env.pub("re2"))
    with pytest.raises(RepositoryError, match="same public key"):
        env.repo.add_product(
            "infusomat", [real, _alias_key(env.pub("re2"))], 2, [env.signer("targets")], env.online
        )
    assert "infusomat" not in (env.repo.state().targets.signed.delegations.roles or {})


def test_delegation_that_lists_one_key_twice_cannot_publish_with_one_person(
    repo_env: RepoEnv, monkeypatch: pytest.MonkeyPatch, tree: Callable[[Path], dict[str, bytes]]
) -> None:
    """A repository made by older tooling may list a key twice; publishing still refuses."""
    env = repo_env
    real, alias = load_public_key(env.pub("re2")), _alias_key(env.pub("re2"))
    with monkeypatch.context() as m:
        m.setattr(signer.repository, "_refuse_duplicate_keys", lambda role, keys: None)
        env.repo.add_product("infusomat", [real, alias], 2, [env.signer("targets")], env.online)
    bundle = env.bundle("1.0.0", 1, signers=("re2",), product="infusomat")
    with open_bundle(bundle, write=True) as b:
        md = b.metadata()
        md.signatures[alias.keyid] = Signature(alias.keyid, md.signatures[real.keyid].signature)
        b.metadata_path.write_bytes(md.to_bytes())
    before = tree(env.path)

    with pytest.raises(ThresholdError, match="only 1 distinct key"):
        publish_bundle(bundle, env.repo, env.online)
    assert tree(env.path) == before


def test_root_cannot_list_one_key_twice(repo_env: RepoEnv) -> None:
    env = repo_env
    root1 = load_public_key(env.pub("root1"))
    alias = _alias_key(env.pub("root1"))
    with pytest.raises(RepositoryError, match="same public key"):
        env.repo.rotate_root(
            add_keys=[alias],
            threshold=2,
            signers=[
                env.signer("root1"),
                env.signer("root2"),
                _Relabel(env.signer("root1"), alias),
            ],
        )
    assert env.repo.load_root().signed.version == 1
    with pytest.raises(RepositoryError, match="same public key"):
        Repository.init(
            env.work / "other-repo",
            root_keys=[root1, alias],
            root_threshold=2,
            targets_keys=[load_public_key(env.pub("targets"))],
            snapshot_keys=[load_public_key(env.pub("snapshot"))],
            timestamp_keys=[load_public_key(env.pub("timestamp"))],
            signers=[env.signer("root1"), _Relabel(env.signer("root1"), alias)],
        )
