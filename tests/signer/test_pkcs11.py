"""PKCS#11 keys: URI parsing, and keys generated, read and used in SoftHSM2."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Targets

from signer import _pkcs11
from signer._pkcs11 import (
    Pkcs11Uri,
    generate_pkcs11_key,
    import_pkcs11_public_key,
    is_pkcs11_uri,
    load_pkcs11_signer,
    parse_pkcs11_uri,
    resolve_module_path,
)
from signer.errors import KeyLoadError, SigningKeyError
from signer.keys import default_keyid, load_signer
from tests.softhsm import SoftHsmToken, softhsm, softhsm_token

SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"


# --- URIs (no token needed) -------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("pkcs11:token=t;id=%01", True),
        ("hsm:2?label=t", True),
        ("hsm:", True),
        ("keys/release.key", False),
        ("./pkcs11.key", False),
        ("", False),
    ],
)
def test_is_pkcs11_uri(spec: str, expected: bool) -> None:
    assert is_pkcs11_uri(spec) is expected


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            f"pkcs11:token=release;id=%01;object=rel%20key?module-path={SOFTHSM}",
            {
                "token_label": "release",
                "key_id": 1,
                "object_label": "rel key",
                "module_path": SOFTHSM,
                "id_bytes": b"\x01",
            },
        ),
        (
            "pkcs11:token=My%20Token%3Bx;id=%00%02",
            {
                "token_label": "My Token;x",
                "key_id": 2,
                "id_bytes": b"\x00\x02",
                "object_label": None,
                "module_path": None,
            },
        ),
        (
            "pkcs11:object=release",
            {"key_id": None, "object_label": "release", "token_label": None, "id_bytes": None},
        ),
        (
            "pkcs11:id=%01%00;type=private?pin-source=env:MY_PIN",
            {"key_id": 256, "pin_env": "MY_PIN"},
        ),
        (
            "pkcs11:serial=0a1b;manufacturer=SoftHSM%20project;model=SoftHSM%20v2;"
            "slot-id=7;id=%05;type=public",
            {
                "token_serial": "0a1b",
                "token_manufacturer": "SoftHSM project",
                "token_model": "SoftHSM v2",
                "slot_id": 7,
                "key_id": 5,
            },
        ),
        ("pkcs11:token=t;id=%01", {"pin_env": "PUMPGUARD_PKCS11_PIN"}),
        (
            "hsm:2?label=YubiKey+PIV+%2315835999",
            {"token_label": "YubiKey PIV #15835999", "key_id": 2, "id_bytes": b"\x02"},
        ),
        ("hsm:", {"token_label": None, "key_id": 2}),
        (
            "hsm:7?label=t&module-path=%2Fopt%2Fm.so&pin-source=env:P",
            {"token_label": "t", "key_id": 7, "module_path": "/opt/m.so", "pin_env": "P"},
        ),
    ],
)
def test_parse_good_uris(uri: str, expected: dict[str, object]) -> None:
    parsed = parse_pkcs11_uri(uri)
    assert isinstance(parsed, Pkcs11Uri)
    assert parsed.uri == uri
    for name, value in expected.items():
        assert getattr(parsed, name) == value, name


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("pkcs11:token=t", "id= and/or object="),
        ("pkcs11:token=t;id=", "empty id"),
        ("pkcs11:token=t;id=%0", "percent-encoding"),
        ("pkcs11:token=t;id=%zz", "percent-encoding"),
        ("pkcs11:token=%FF;id=%01", "must be UTF-8"),
        ("pkcs11:token=t;bogus=1;id=%01", "unsupported PKCS#11 URI attribute 'bogus'"),
        ("pkcs11:token=t;library-manufacturer=x;id=%01", "unsupported"),
        ("pkcs11:token=t;id=%01?module-name=softhsm2", "unsupported"),
        ("pkcs11:token=t;token=u;id=%01", "given twice"),
        ("pkcs11:token;id=%01", "malformed"),
        ("pkcs11:token=t;id=%01;type=cert", "type must be"),
        ("pkcs11:token=t;id=%01;slot-id=x", "slot-id"),
        ("pkcs11:token=t;id=%01?pin-source=file:/etc/pin", "pin-source must be env"),
        ("pkcs11:token=t;id=%01?pin-source=env:", "pin-source must be env"),
        ("pkcs11:token=t;id=%01?module-path=", "empty module-path"),
        ("hsm:abc", "decimal"),
        ("hsm:2?lable=t", "unsupported hsm: URI attribute"),
        ("hsm:2?label=t&label=u", "given twice"),
        ("keys/release.key", "not a PKCS#11 URI"),
    ],
)
def test_parse_bad_uris(uri: str, message: str) -> None:
    with pytest.raises(KeyLoadError, match=re.escape(message)):
        parse_pkcs11_uri(uri)


@pytest.mark.parametrize(
    "uri",
    [
        "pkcs11:token=t;id=%01?pin-value=s3cret-9876",
        "pkcs11:token=t;id=%01;pin-value=s3cret-9876",
        "pkcs11:token=t;id=%01?module-path=/x&PIN-VALUE=s3cret-9876",
        "hsm:2?label=t&pin-value=s3cret-9876",
    ],
)
def test_pin_value_rejected_without_echo(uri: str) -> None:
    with pytest.raises(KeyLoadError, match="must not contain pin-value") as info:
        parse_pkcs11_uri(uri)
    assert "s3cret" not in str(info.value)
    # The same through the public entry points.
    with pytest.raises(KeyLoadError) as info:
        load_signer(uri)
    assert "s3cret" not in str(info.value)


def test_module_path_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "libfake.so"
    module.write_bytes(b"")
    other = tmp_path / "libother.so"
    other.write_bytes(b"")
    monkeypatch.setenv("PYKCS11LIB", str(other))
    in_uri = parse_pkcs11_uri(f"pkcs11:token=t;id=%01?module-path={module}")
    assert resolve_module_path(in_uri) == str(module.resolve())
    plain = parse_pkcs11_uri("pkcs11:token=t;id=%01")
    assert resolve_module_path(plain) == str(other.resolve())

    monkeypatch.delenv("PYKCS11LIB")
    monkeypatch.setattr(_pkcs11, "DEFAULT_MODULE_PATH", str(tmp_path / "absent.so"))
    with pytest.raises(KeyLoadError, match=r"no PKCS#11 module.*PYKCS11LIB"):
        resolve_module_path(plain)
    missing = parse_pkcs11_uri(f"pkcs11:token=t;id=%01?module-path={tmp_path}/nope.so")
    with pytest.raises(KeyLoadError, match=r"nope\.so does not exist"):
        load_signer(missing.uri)


# --- SoftHSM2 ---------------------------------------------------------------


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SoftHsmToken]:
    with softhsm_token(tmp_path, monkeypatch, label="pumpguard-test") as t:
        yield t


@pytest.mark.pkcs11
def test_generate_then_import(token: SoftHsmToken) -> None:
    uri = token.uri(key_id=1, object_label="release-engineer")
    key = generate_pkcs11_key(uri)
    assert key.keytype == "ecdsa"
    assert key.scheme == "ecdsa-sha2-nistp256"
    assert key.keyid == default_keyid(key)

    imported = import_pkcs11_public_key(uri)
    assert imported == key
    assert imported.keyid == key.keyid
    # Same key by label only, and through securesystemslib's URI form and
    # $PYKCS11LIB instead of module-path.
    assert import_pkcs11_public_key(token.uri(None, "release-engineer")) == key
    assert import_pkcs11_public_key(token.uri(1, scheme="hsm", with_module=False)) == key


@pytest.mark.pkcs11
def test_generated_private_key_stays_in_token(token: SoftHsmToken) -> None:
    import pkcs11

    generate_pkcs11_key(token.uri(key_id=3, object_label="qa"))
    lib = pkcs11.lib(token.module)
    with lib.get_token(token_label=token.label).open(user_pin=token.pin) as session:
        private = session.get_key(pkcs11.ObjectClass.PRIVATE_KEY, id=b"\x03")
        assert private.label == "qa"
        attrs = pkcs11.Attribute
        assert private[attrs.TOKEN] is True
        assert private[attrs.PRIVATE] is True
        assert private[attrs.SENSITIVE] is True
        assert private[attrs.EXTRACTABLE] is False
        assert private[attrs.SIGN] is True
        assert private[attrs.DERIVE] is False
        public = session.get_key(pkcs11.ObjectClass.PUBLIC_KEY, id=b"\x03")
        assert public[attrs.TOKEN] is True


@pytest.mark.pkcs11
@pytest.mark.parametrize("form", ["pkcs11", "hsm"])
def test_sign_tuf_metadata(token: SoftHsmToken, form: str) -> None:
    uri = token.uri(key_id=2, object_label="targets")
    key = generate_pkcs11_key(uri)
    spec = uri if form == "pkcs11" else token.uri(2, scheme="hsm")
    signer = load_signer(spec)
    assert signer.public_key == key

    md = Metadata(Targets())
    sig = md.sign(signer)
    assert sig.keyid == key.keyid
    key.verify_signature(sig, md.signed_bytes)

    root = Root()
    root.add_key(key, Targets.type)
    root.verify_delegate(Targets.type, md.signed_bytes, md.signatures)

    md.signed.version += 1  # the signature no longer covers the content
    with pytest.raises(UnsignedMetadataError):
        root.verify_delegate(Targets.type, md.signed_bytes, md.signatures)


@pytest.mark.pkcs11
def test_wrong_pin(token: SoftHsmToken, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = token.uri(key_id=1, object_label="k")
    generate_pkcs11_key(uri)
    monkeypatch.setenv("PUMPGUARD_PKCS11_PIN", "not-the-pin-123")
    with pytest.raises(KeyLoadError, match="wrong PIN") as info:
        load_signer(uri)
    assert uri in str(info.value)
    assert "not-the-pin-123" not in str(info.value)
    assert token.pin not in str(info.value)
    with pytest.raises(KeyLoadError, match="wrong PIN"):
        generate_pkcs11_key(token.uri(key_id=9))


@pytest.mark.pkcs11
def test_pin_from_other_env_or_missing(
    token: SoftHsmToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = token.uri(key_id=1)
    generate_pkcs11_key(uri)
    monkeypatch.delenv("PUMPGUARD_PKCS11_PIN")
    monkeypatch.setattr("sys.stdin", io.StringIO())  # not a terminal: no prompt
    with pytest.raises(KeyLoadError, match="set PUMPGUARD_PKCS11_PIN"):
        load_signer(uri)
    # Public keys are readable without the PIN.
    assert import_pkcs11_public_key(uri).scheme == "ecdsa-sha2-nistp256"

    monkeypatch.setenv("SIGNING_PIN", token.pin)
    signer = load_signer(uri + "&pin-source=env:SIGNING_PIN")
    signer.public_key.verify_signature(signer.sign(b"payload"), b"payload")


@pytest.mark.pkcs11
def test_missing_key_or_token(token: SoftHsmToken) -> None:
    generate_pkcs11_key(token.uri(key_id=1, object_label="present"))
    for uri in (token.uri(key_id=7), token.uri(None, "absent")):
        with pytest.raises(KeyLoadError, match="no private key with") as info:
            load_pkcs11_signer(uri)
        assert uri in str(info.value)
        with pytest.raises(KeyLoadError, match="no public key with"):
            import_pkcs11_public_key(uri)
    other = token.uri(key_id=1).replace("token=pumpguard-test", "token=other")
    with pytest.raises(KeyLoadError, match="no initialised PKCS#11 token matches"):
        load_signer(other)


@pytest.mark.pkcs11
def test_generate_refuses_existing_id_or_label(token: SoftHsmToken) -> None:
    key = generate_pkcs11_key(token.uri(key_id=1, object_label="first"))
    with pytest.raises(SigningKeyError, match="already holds an object with this id"):
        generate_pkcs11_key(token.uri(key_id=1, object_label="second"))
    with pytest.raises(SigningKeyError, match="this label"):
        generate_pkcs11_key(token.uri(key_id=2, object_label="first"))
    with pytest.raises(SigningKeyError, match="give the new key an id"):
        generate_pkcs11_key(token.uri(None, "third"))
    assert import_pkcs11_public_key(token.uri(key_id=1)) == key


@pytest.mark.pkcs11
def test_several_tokens_need_a_label(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hsm = softhsm(tmp_path, monkeypatch)
    try:
        a = hsm.init_token("alpha")
        b = hsm.init_token("beta")
        monkeypatch.setenv("PUMPGUARD_PKCS11_PIN", a.pin)
        key_a = generate_pkcs11_key(a.uri(key_id=1))
        key_b = generate_pkcs11_key(b.uri(key_id=1))
        assert key_a != key_b
        assert import_pkcs11_public_key(b.uri(key_id=1)) == key_b
        with pytest.raises(KeyLoadError, match="several tokens match"):
            import_pkcs11_public_key(f"pkcs11:id=%01?module-path={a.module}")
    finally:
        hsm.finalize()
