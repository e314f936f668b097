"""Key generation, encrypted storage and loading (signer.keys)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Targets

from repo_support import PASSPHRASE, CliResult
from signer.errors import KeyLoadError, SigningKeyError
from signer.keys import KeyType, generate_keypair, load_public_key, load_signer


@pytest.mark.parametrize(
    ("key_type", "scheme"),
    [(KeyType.ED25519, "ed25519"), (KeyType.ECDSA_P256, "ecdsa-sha2-nistp256")],
)
def test_generated_key_is_encrypted_private_and_signs(
    tmp_path: Path, key_type: KeyType, scheme: str
) -> None:
    public = generate_keypair(tmp_path / "k", key_type, PASSPHRASE.encode())
    pem = (tmp_path / "k.key").read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(os.stat(tmp_path / "k.key").st_mode) == 0o600
    assert load_public_key(tmp_path / "k.pub") == public
    assert public.scheme == scheme

    signer = load_signer(str(tmp_path / "k.key"))
    md = Metadata(Targets())
    sig = md.sign(signer)
    public.verify_signature(sig, md.signed_bytes)


def test_refuses_unencrypted_key_without_explicit_flag(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="refusing to write an unencrypted private key"):
        generate_keypair(tmp_path / "k", passphrase=None)
    assert not list(tmp_path.iterdir())
    generate_keypair(tmp_path / "k", passphrase=None, insecure_no_passphrase=True)
    assert b"ENCRYPTED" not in (tmp_path / "k.key").read_bytes()
    load_signer(str(tmp_path / "k.key"))


def test_refuses_to_overwrite_existing_key(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "k", passphrase=PASSPHRASE.encode())
    before = (tmp_path / "k.key").read_bytes()
    with pytest.raises(SigningKeyError, match="refusing to overwrite"):
        generate_keypair(tmp_path / "k", passphrase=PASSPHRASE.encode())
    assert (tmp_path / "k.key").read_bytes() == before


def test_wrong_passphrase_is_a_clear_error_without_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_keypair(tmp_path / "k", passphrase=PASSPHRASE.encode())
    monkeypatch.setenv("PUMPGUARD_PASSPHRASE", "wrong-passphrase-123")
    with pytest.raises(KeyLoadError, match="wrong passphrase") as excinfo:
        load_signer(str(tmp_path / "k.key"))
    assert "wrong-passphrase-123" not in str(excinfo.value)


def test_encrypted_key_without_passphrase_and_terminal_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_keypair(tmp_path / "k", passphrase=PASSPHRASE.encode())
    monkeypatch.delenv("PUMPGUARD_PASSPHRASE")
    with pytest.raises(KeyLoadError, match="set PUMPGUARD_PASSPHRASE"):
        load_signer(str(tmp_path / "k.key"))


def test_public_key_with_forged_keyid_is_rejected(tmp_path: Path) -> None:
    """A .pub whose keyid was edited could count one key twice towards a threshold."""
    generate_keypair(tmp_path / "k", passphrase=PASSPHRASE.encode())
    data = json.loads((tmp_path / "k.pub").read_text())
    data["keyid"] = "0" * 64
    (tmp_path / "k.pub").write_text(json.dumps(data))
    with pytest.raises(KeyLoadError, match="is not the key's own"):
        load_public_key(tmp_path / "k.pub")


@pytest.mark.parametrize("content", [b"", b"not json", b"[]", b'{"keyid": "x"}'])
def test_malformed_public_key_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "bad.pub").write_bytes(content)
    with pytest.raises(KeyLoadError, match=r"bad\.pub"):
        load_public_key(tmp_path / "bad.pub")


def test_missing_private_key_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(KeyLoadError, match="does not exist"):
        load_signer(str(tmp_path / "nope.key"))


def test_cli_generates_key_from_passphrase_env_and_prints_json(
    tmp_path: Path, run_cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_PASS", "another-passphrase")
    r = run_cli(
        "keys",
        "generate",
        "--out",
        tmp_path / "re1",
        "--type",
        "ecdsa-p256",
        "--passphrase-env",
        "MY_PASS",
        "--json",
    )
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["keytype"] == "ecdsa"
    assert "another-passphrase" not in r.out + r.err
    assert (tmp_path / "re1.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED")


def test_cli_refuses_unencrypted_key_with_exit_code_2(
    tmp_path: Path, run_cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PUMPGUARD_PASSPHRASE")
    r = run_cli("keys", "generate", "--out", tmp_path / "k")
    assert r.code == 2
    assert r.err.startswith("error: refusing to write an unencrypted private key")
    assert r.err.count("\n") == 1
