"""PKCS#11 keys: ECDSA signing keys held in an HSM (SoftHSM2 in tests).

A PKCS#11 key is named by a URI instead of a key file path. Two forms are
accepted:

* RFC 7512: ``pkcs11:token=<token label>;id=%01;object=<key label>`` with the
  optional query attributes ``module-path=<PKCS#11 module>`` and
  ``pin-source=env:<VARIABLE>``. Attribute values are percent-encoded; ``id``
  is the key's ``CKA_ID`` bytes (read as a big-endian integer). The token may
  also be selected by ``serial``, ``manufacturer``, ``model`` or ``slot-id``.
* securesystemslib's ``hsm:<key id>?label=<token label>`` (key id in decimal,
  2 when absent), which also accepts ``module-path`` and ``pin-source``.

The user PIN never sits in a URI (``pin-value`` is refused, since URIs end up
in command lines, shell histories and logs). It is read from the environment
variable ``PUMPGUARD_PKCS11_PIN`` (or the one ``pin-source=env:NAME`` names), or
asked for on the terminal. It is never logged, printed or put in an error.

The PKCS#11 module is the URI's ``module-path``, else the ``PYKCS11LIB``
environment variable, else Debian's SoftHSM2 module if it is installed.

Only ECDSA P-256 and P-384 keys are supported (TUF schemes
``ecdsa-sha2-nistp256`` / ``ecdsa-sha2-nistp384``); digests are computed on the
host and signed with the token's raw ``CKM_ECDSA`` mechanism, which every
PKCS#11 HSM provides. python-pkcs11 is an optional dependency
(``pumpguard[pkcs11]``) and is imported only when a PKCS#11 key is used.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, unquote_to_bytes

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key
from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import Key, SecretsHandler, Signature, Signer, SSlibKey

from signer.errors import KeyLoadError, SigningKeyError

if TYPE_CHECKING:
    import pkcs11

__all__ = [
    "DEFAULT_MODULE_PATH",
    "DEFAULT_PIN_ENV",
    "MODULE_PATH_ENV",
    "Pkcs11Signer",
    "Pkcs11Uri",
    "generate_pkcs11_key",
    "import_pkcs11_public_key",
    "is_pkcs11_uri",
    "load_pkcs11_signer",
    "parse_pkcs11_uri",
    "resolve_module_path",
]

DEFAULT_PIN_ENV = "PUMPGUARD_PKCS11_PIN"
MODULE_PATH_ENV = "PYKCS11LIB"
DEFAULT_MODULE_PATH = "/usr/lib/softhsm/libsofthsm2.so"
HSM_DEFAULT_KEY_ID = 2  # securesystemslib's default (PIV slot 9c)

_SCHEME_FOR_CURVE: dict[str, tuple[str, str]] = {
    # curve name -> (TUF signing scheme, hash used before CKM_ECDSA)
    "secp256r1": ("ecdsa-sha2-nistp256", "sha256"),
    "secp384r1": ("ecdsa-sha2-nistp384", "sha384"),
}
_HASH_FOR_SCHEME = dict(_SCHEME_FOR_CURVE.values())

# RFC 7512 path attributes: the ones used to pick the token and the key, and
# ``type`` (checked, then implied by the operation).
_PATH_ATTRS = frozenset(
    {"token", "serial", "manufacturer", "model", "slot-id", "object", "id", "type"}
)
_QUERY_ATTRS = frozenset({"module-path", "pin-source"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PIN_VALUE = re.compile(r"pin-value", re.IGNORECASE)
_SESSION_LOCK = threading.RLock()


@dataclass(frozen=True)
class Pkcs11Uri:
    """A parsed PKCS#11 key URI.

    Attributes:
        uri: The URI as given (it never holds a PIN), for messages.
        token_label: ``CKA_LABEL`` of the token, or None for any token.
        key_id: The key's ``CKA_ID`` as a big-endian integer, or None.
        object_label: The key's ``CKA_LABEL``, or None.
        module_path: The URI's ``module-path``, or None (see
            :func:`resolve_module_path`).
        pin_env: Environment variable holding the user PIN.
        token_serial: Serial number of the token, or None.
        token_manufacturer: Manufacturer of the token, or None.
        token_model: Model of the token, or None.
        slot_id: PKCS#11 slot id, or None.
        key_id_length: Number of bytes of ``CKA_ID`` as written in the URI (keeps
            leading zero bytes); None means the shortest encoding.
    """

    uri: str
    token_label: str | None = None
    key_id: int | None = None
    object_label: str | None = None
    module_path: str | None = None
    pin_env: str = DEFAULT_PIN_ENV
    token_serial: str | None = None
    token_manufacturer: str | None = None
    token_model: str | None = None
    slot_id: int | None = None
    key_id_length: int | None = None

    @property
    def id_bytes(self) -> bytes | None:
        """The key's ``CKA_ID`` bytes, or None when the URI names no id."""
        if self.key_id is None:
            return None
        length = self.key_id_length or max(1, (self.key_id.bit_length() + 7) // 8)
        return self.key_id.to_bytes(length, "big")

    def describe_key(self) -> str:
        """A short description of the key the URI selects, for messages."""
        parts = []
        if self.key_id is not None:
            parts.append(f"id {self.key_id}")
        if self.object_label is not None:
            parts.append(f"label {self.object_label!r}")
        return " and ".join(parts)

    def describe_token(self) -> str:
        """A short description of the token the URI selects, for messages."""
        return f"token {self.token_label!r}" if self.token_label else "the token"


def is_pkcs11_uri(spec: str) -> bool:
    """Whether ``spec`` names a PKCS#11 key rather than a key file.

    Args:
        spec: A key file path or URI.

    Returns:
        True for ``pkcs11:`` (RFC 7512) and ``hsm:`` (securesystemslib) URIs.
    """
    return spec.startswith(("pkcs11:", "hsm:"))


def parse_pkcs11_uri(uri: str) -> Pkcs11Uri:
    """Parse a ``pkcs11:`` or ``hsm:`` key URI.

    Args:
        uri: The URI (see the module docstring).

    Returns:
        The parsed URI.

    Raises:
        KeyLoadError: Not a PKCS#11 URI, malformed, uses unsupported attributes,
            names no key, or carries a PIN (``pin-value``).
    """
    # Checked first, and the URI is then never echoed: it holds a PIN.
    if _PIN_VALUE.search(uri):
        raise KeyLoadError(
            "PKCS#11 URIs must not contain pin-value (a PIN in a command line "
            f"leaks); set {DEFAULT_PIN_ENV} or use pin-source=env:NAME"
        )
    if uri.startswith("pkcs11:"):
        return _parse_rfc7512(uri)
    if uri.startswith("hsm:"):
        return _parse_hsm(uri)
    raise KeyLoadError(f"{uri!r} is not a PKCS#11 URI (pkcs11:... or hsm:...)")


def _split_attrs(uri: str, text: str, sep: str, where: str) -> dict[str, str]:
    """Split ``name=value`` pairs (values still percent-encoded)."""
    attrs: dict[str, str] = {}
    if not text:
        return attrs
    for part in text.split(sep):
        name, eq, value = part.partition("=")
        if not eq or not name:
            raise KeyLoadError(f"{uri}: malformed {where} attribute {part!r}")
        if name in attrs:
            raise KeyLoadError(f"{uri}: attribute {name!r} given twice")
        if _BAD_PERCENT.search(value):
            raise KeyLoadError(f"{uri}: bad percent-encoding in {name!r}")
        attrs[name] = value
    return attrs


def _query_attrs(uri: str, query: dict[str, str]) -> tuple[str | None, str]:
    """Return (module path, PIN variable) from decoded query attributes."""
    module_path = query.get("module-path")
    if module_path is not None and not module_path:
        raise KeyLoadError(f"{uri}: empty module-path")
    pin_env = DEFAULT_PIN_ENV
    source = query.get("pin-source")
    if source is not None:
        scheme, _, name = source.partition(":")
        if scheme != "env" or not _ENV_NAME.fullmatch(name):
            raise KeyLoadError(f"{uri}: pin-source must be env:NAME (an environment variable)")
        pin_env = name
    return module_path, pin_env


def _parse_rfc7512(uri: str) -> Pkcs11Uri:
    path, _, query_text = uri.removeprefix("pkcs11:").partition("?")
    path_attrs = _split_attrs(uri, path, ";", "path")
    raw_query = _split_attrs(uri, query_text, "&", "query")
    for name in path_attrs:
        if name not in _PATH_ATTRS:
            raise KeyLoadError(f"{uri}: unsupported PKCS#11 URI attribute {name!r}")
    for name in raw_query:
        if name not in _QUERY_ATTRS:
            raise KeyLoadError(f"{uri}: unsupported PKCS#11 URI query attribute {name!r}")
    try:
        text = {k: unquote(v, errors="strict") for k, v in path_attrs.items()}
        query = {k: unquote(v, errors="strict") for k, v in raw_query.items()}
    except UnicodeDecodeError as e:
        raise KeyLoadError(f"{uri}: attribute values must be UTF-8") from e

    key_id: int | None = None
    key_id_length: int | None = None
    if "id" in path_attrs:
        id_bytes = unquote_to_bytes(path_attrs["id"])
        if not id_bytes:
            raise KeyLoadError(f"{uri}: empty id")
        key_id, key_id_length = int.from_bytes(id_bytes, "big"), len(id_bytes)
    if text.get("type", "private") not in ("private", "public"):
        raise KeyLoadError(f"{uri}: type must be private or public")
    slot_id: int | None = None
    if "slot-id" in text:
        if not text["slot-id"].isdigit():
            raise KeyLoadError(f"{uri}: slot-id must be a decimal number")
        slot_id = int(text["slot-id"])
    if key_id is None and "object" not in text:
        raise KeyLoadError(f"{uri}: name the key with id= and/or object=")
    module_path, pin_env = _query_attrs(uri, query)
    return Pkcs11Uri(
        uri=uri,
        token_label=text.get("token"),
        key_id=key_id,
        object_label=text.get("object"),
        module_path=module_path,
        pin_env=pin_env,
        token_serial=text.get("serial"),
        token_manufacturer=text.get("manufacturer"),
        token_model=text.get("model"),
        slot_id=slot_id,
        key_id_length=key_id_length,
    )


def _parse_hsm(uri: str) -> Pkcs11Uri:
    path, _, query_text = uri.removeprefix("hsm:").partition("?")
    if path and not path.isdigit():
        raise KeyLoadError(f"{uri}: the key id of an hsm: URI must be decimal")
    key_id = int(path) if path else HSM_DEFAULT_KEY_ID
    try:
        pairs = parse_qsl(query_text, keep_blank_values=True, strict_parsing=True)
    except ValueError as e:
        raise KeyLoadError(f"{uri}: malformed query") from e
    query: dict[str, str] = {}
    for name, value in pairs:
        if name not in {"label", *_QUERY_ATTRS}:
            raise KeyLoadError(f"{uri}: unsupported hsm: URI attribute {name!r}")
        if name in query:
            raise KeyLoadError(f"{uri}: attribute {name!r} given twice")
        query[name] = value
    module_path, pin_env = _query_attrs(uri, query)
    return Pkcs11Uri(
        uri=uri,
        token_label=query.get("label") or None,
        key_id=key_id,
        module_path=module_path,
        pin_env=pin_env,
    )


def resolve_module_path(parsed: Pkcs11Uri) -> str:
    """Return the PKCS#11 module (shared library) to load for ``parsed``.

    The URI's ``module-path`` wins, then ``$PYKCS11LIB``, then Debian's SoftHSM2
    module. The path is resolved so one module is loaded (and initialised)
    once per process however it is spelled.

    Args:
        parsed: The parsed URI.

    Returns:
        The real path of the module.

    Raises:
        KeyLoadError: No module is configured or the file does not exist.
    """
    candidate = parsed.module_path or os.environ.get(MODULE_PATH_ENV) or None
    if candidate is None:
        if not Path(DEFAULT_MODULE_PATH).is_file():
            raise KeyLoadError(
                f"{parsed.uri}: no PKCS#11 module: add ?module-path=... to the URI "
                f"or set {MODULE_PATH_ENV} (SoftHSM2 is not installed at "
                f"{DEFAULT_MODULE_PATH})"
            )
        candidate = DEFAULT_MODULE_PATH
    if not Path(candidate).is_file():
        raise KeyLoadError(f"{parsed.uri}: PKCS#11 module {candidate} does not exist")
    return os.path.realpath(candidate)


def _import_pkcs11() -> Any:
    """Import python-pkcs11, which is an optional dependency."""
    try:
        import pkcs11
        import pkcs11.util.ec
    except ImportError as e:
        raise KeyLoadError(
            "PKCS#11 keys need python-pkcs11: pip install 'pumpguard[pkcs11]'"
        ) from e
    return pkcs11


def _pkcs11_error(parsed: Pkcs11Uri, action: str, e: Exception) -> KeyLoadError:
    """Turn a python-pkcs11 error into a KeyLoadError naming the URI (no PIN)."""
    from pkcs11 import exceptions as p11e

    token = parsed.describe_token()
    if isinstance(e, p11e.PinIncorrect | p11e.PinInvalid | p11e.PinLenRange):
        reason = f"wrong PIN for {token}"
    elif isinstance(e, p11e.PinLocked):
        reason = f"the user PIN of {token} is locked"
    elif isinstance(e, p11e.PinExpired):
        reason = f"the user PIN of {token} has expired"
    elif isinstance(e, p11e.UserPinNotInitialized):
        reason = f"{token} has no user PIN set"
    elif isinstance(e, p11e.UserAlreadyLoggedIn):
        reason = "another session of this process is logged in to the token"
    else:
        detail = str(e)
        reason = type(e).__name__ + (f": {detail}" if detail else "")
    return KeyLoadError(f"{parsed.uri}: cannot {action}: {reason}")


def _find_token(parsed: Pkcs11Uri) -> pkcs11.Token:
    """Return the one initialised token the URI selects."""
    module = resolve_module_path(parsed)
    p11 = _import_pkcs11()
    try:
        lib = p11.lib(module)
        found: list[pkcs11.Token] = []
        for slot in lib.get_slots(token_present=True):
            if parsed.slot_id is not None and slot.slot_id != parsed.slot_id:
                continue
            token = slot.get_token()
            if not token.flags & p11.TokenFlag.TOKEN_INITIALIZED:
                continue
            wanted = (
                (parsed.token_label, token.label),
                (parsed.token_serial, token.serial.decode("ascii", "replace").strip()),
                (parsed.token_manufacturer, token.manufacturer_id),
                (parsed.token_model, token.model),
            )
            if all(want is None or want == have for want, have in wanted):
                found.append(token)
    except p11.PKCS11Error as e:
        raise _pkcs11_error(parsed, f"use the PKCS#11 module {module}", e) from e
    if not found:
        raise KeyLoadError(
            f"{parsed.uri}: no initialised PKCS#11 token matches "
            f"(module {module}; is the token present and SOFTHSM2_CONF right?)"
        )
    if len(found) > 1:
        labels = ", ".join(sorted(repr(t.label) for t in found))
        raise KeyLoadError(f"{parsed.uri}: several tokens match ({labels}); add token=<label>")
    return found[0]


def _get_pin(parsed: Pkcs11Uri, token_label: str) -> str | None:
    """Return the user PIN from the environment or the terminal, or None."""
    value = os.environ.get(parsed.pin_env)
    if value:
        return value
    if not sys.stdin.isatty():
        return None
    pin = getpass.getpass(f"User PIN for PKCS#11 token {token_label!r}: ")
    return pin or None


def _require_pin(parsed: Pkcs11Uri, token_label: str) -> str:
    pin = _get_pin(parsed, token_label)
    if pin is None:
        raise KeyLoadError(
            f"{parsed.uri}: the token needs its user PIN: set {parsed.pin_env} or run on a terminal"
        )
    return pin


@contextmanager
def _session(
    parsed: Pkcs11Uri, token: pkcs11.Token, pin: str | None, *, rw: bool = False
) -> Iterator[pkcs11.Session]:
    """Open a session (logged in when ``pin`` is given) and close it after."""
    p11 = _import_pkcs11()
    # PKCS#11 login state is per process, not per session: a second C_Login
    # while another session is logged in fails. One session at a time.
    with _SESSION_LOCK:
        try:
            session = token.open(rw=rw, user_pin=pin)
        except p11.PKCS11Error as e:
            action = f"log in to {parsed.describe_token()}"
            raise _pkcs11_error(parsed, action, e) from e
        try:
            yield session
        finally:
            # The token may be gone: then there is nothing left to release.
            with suppress(p11.PKCS11Error):
                session.close()


def _find_objects(
    session: pkcs11.Session, parsed: Pkcs11Uri, object_class: Any
) -> list[pkcs11.Object]:
    p11 = _import_pkcs11()
    attrs: dict[Any, Any] = {p11.Attribute.CLASS: object_class}
    if parsed.id_bytes is not None:
        attrs[p11.Attribute.ID] = parsed.id_bytes
    if parsed.object_label is not None:
        attrs[p11.Attribute.LABEL] = parsed.object_label
    return list(session.get_objects(attrs))


def _one_key(parsed: Pkcs11Uri, objects: list[pkcs11.Object], kind: str) -> Any:
    p11 = _import_pkcs11()
    where = f"{parsed.describe_token()}"
    if not objects:
        raise KeyLoadError(f"{parsed.uri}: no {kind} with {parsed.describe_key()} in {where}")
    if len(objects) > 1:
        raise KeyLoadError(
            f"{parsed.uri}: {len(objects)} {kind}s with {parsed.describe_key()} "
            f"in {where}; make the URI more specific"
        )
    key = objects[0]
    if key[p11.Attribute.KEY_TYPE] != p11.KeyType.EC:
        raise KeyLoadError(f"{parsed.uri}: the {kind} is not an ECDSA key")
    return key


def _public_key_from_object(parsed: Pkcs11Uri, obj: Any) -> SSlibKey:
    """Convert a PKCS#11 EC public key object into a TUF key."""
    p11 = _import_pkcs11()
    try:
        der = p11.util.ec.encode_ec_public_key(obj)
        public = load_der_public_key(der)
    except (p11.PKCS11Error, ValueError, TypeError) as e:
        raise KeyLoadError(f"{parsed.uri}: cannot read the public key: {e}") from e
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise KeyLoadError(f"{parsed.uri}: the public key is not an EC key")
    scheme = _SCHEME_FOR_CURVE.get(public.curve.name)
    if scheme is None:
        raise KeyLoadError(
            f"{parsed.uri}: curve {public.curve.name} is not supported (only NIST P-256 and P-384)"
        )
    return SSlibKey.from_crypto(public, scheme=scheme[0])


def import_pkcs11_public_key(uri: str) -> SSlibKey:
    """Read the ECDSA public key a PKCS#11 URI names from its token.

    The key is read without logging in when the token allows it, else with the
    user PIN (see the module docstring).

    Args:
        uri: A ``pkcs11:`` or ``hsm:`` URI.

    Returns:
        The public key in TUF form (keytype ``ecdsa``, default keyid).

    Raises:
        KeyLoadError: Bad URI, no module or token, wrong PIN, or no matching
            EC public key.
    """
    parsed = parse_pkcs11_uri(uri)
    token = _find_token(parsed)
    p11 = _import_pkcs11()
    with _session(parsed, token, None) as session:
        objects = _find_objects(session, parsed, p11.ObjectClass.PUBLIC_KEY)
        if objects:
            return _public_key_from_object(parsed, _one_key(parsed, objects, "public key"))
    # The public key may be CKA_PRIVATE: only visible after logging in.
    pin = _get_pin(parsed, token.label)
    if pin is None:
        raise KeyLoadError(
            f"{uri}: no public key with {parsed.describe_key()} is visible without "
            f"logging in to {parsed.describe_token()}; set {parsed.pin_env}"
        )
    with _session(parsed, token, pin) as session:
        objects = _find_objects(session, parsed, p11.ObjectClass.PUBLIC_KEY)
        return _public_key_from_object(parsed, _one_key(parsed, objects, "public key"))


class Pkcs11Signer(Signer):
    """Signs with an ECDSA private key kept in a PKCS#11 token.

    Equivalent to securesystemslib's ``HSMSigner``, but takes the module from
    the URI (not only ``$PYKCS11LIB``), reads RFC 7512 URIs and checks each
    signature against the public key before returning it. Each :meth:`sign`
    opens a session, logs in, signs and logs out; the private key never leaves
    the token.

    Attributes:
        uri: The parsed URI of the key.
    """

    SCHEME = "pkcs11"

    def __init__(self, uri: Pkcs11Uri, public_key: SSlibKey, pin: str) -> None:
        """Create a signer; prefer :func:`load_pkcs11_signer`.

        Args:
            uri: The parsed URI of the private key.
            public_key: The key's public half (its scheme picks the hash).
            pin: The token's user PIN.

        Raises:
            KeyLoadError: The key's scheme is not ECDSA P-256 or P-384.
        """
        if public_key.scheme not in _HASH_FOR_SCHEME:
            raise KeyLoadError(f"{uri.uri}: unsupported scheme {public_key.scheme}")
        self.uri = uri
        self._public_key = public_key
        self._pin = pin

    def __repr__(self) -> str:
        return f"Pkcs11Signer({self.uri.uri!r}, keyid={self._public_key.keyid})"

    @property
    def public_key(self) -> SSlibKey:
        """The TUF public key whose signatures this signer makes."""
        return self._public_key

    @classmethod
    def from_priv_key_uri(
        cls,
        priv_key_uri: str,
        public_key: Key,
        secrets_handler: SecretsHandler | None = None,
    ) -> Pkcs11Signer:
        """Create a signer for ``priv_key_uri`` and a known public key.

        Args:
            priv_key_uri: A ``pkcs11:`` or ``hsm:`` URI.
            public_key: The key's public half, as recorded in TUF metadata.
            secrets_handler: Asked for the ``"pin"``; without one the PIN comes
                from the environment or the terminal.

        Returns:
            The signer (the token is first used by :meth:`sign`).

        Raises:
            KeyLoadError: Bad URI, not an SSlibKey, or no PIN.
        """
        parsed = parse_pkcs11_uri(priv_key_uri)
        if not isinstance(public_key, SSlibKey):
            raise KeyLoadError(f"{priv_key_uri}: expected an SSlibKey public key")
        if secrets_handler is not None:
            pin = secrets_handler("pin")
        else:
            pin = _require_pin(parsed, parsed.token_label or "")
        return cls(parsed, public_key, pin)

    def sign(self, payload: bytes) -> Signature:
        """Sign ``payload`` in the token.

        Args:
            payload: The bytes to sign (e.g. canonical TUF ``signed`` bytes).

        Returns:
            A signature by :attr:`public_key` (DER-encoded ECDSA, hex).

        Raises:
            KeyLoadError: The token, key or PIN is no longer usable.
            SigningKeyError: The token made a signature that does not verify.
        """
        p11 = _import_pkcs11()
        digest = hashlib.new(_HASH_FOR_SCHEME[self._public_key.scheme], payload).digest()
        token = _find_token(self.uri)
        with _session(self.uri, token, self._pin) as session:
            objects = _find_objects(session, self.uri, p11.ObjectClass.PRIVATE_KEY)
            key = _one_key(self.uri, objects, "private key")
            try:
                raw = key.sign(digest, mechanism=p11.Mechanism.ECDSA)
            except p11.PKCS11Error as e:
                raise _pkcs11_error(self.uri, "sign", e) from e
        half = len(raw) // 2
        der = encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )
        signature = Signature(self._public_key.keyid, der.hex())
        try:
            self._public_key.verify_signature(signature, payload)
        except UnverifiedSignatureError as e:
            raise SigningKeyError(
                f"{self.uri.uri}: the token's signature does not verify with the "
                "public key (private and public key objects do not match?)"
            ) from e
        return signature


def load_pkcs11_signer(uri: str) -> Signer:
    """Load a signer for the private key a PKCS#11 URI names.

    Logs in once to check the PIN and that the token holds the private key and
    its public key, which becomes the signer's ``public_key``.

    Args:
        uri: A ``pkcs11:`` or ``hsm:`` URI.

    Returns:
        A :class:`Pkcs11Signer` ready to sign TUF metadata.

    Raises:
        KeyLoadError: Bad URI, no module or token, no or wrong PIN, or the key
            (private or public half) is missing or not ECDSA.
    """
    parsed = parse_pkcs11_uri(uri)
    token = _find_token(parsed)
    pin = _require_pin(parsed, token.label)
    p11 = _import_pkcs11()
    with _session(parsed, token, pin) as session:
        private = _find_objects(session, parsed, p11.ObjectClass.PRIVATE_KEY)
        _one_key(parsed, private, "private key")
        public = _find_objects(session, parsed, p11.ObjectClass.PUBLIC_KEY)
        key = _public_key_from_object(parsed, _one_key(parsed, public, "public key"))
    return Pkcs11Signer(parsed, key, pin)


def generate_pkcs11_key(uri: str) -> SSlibKey:
    """Generate an ECDSA P-256 key pair in the token a URI names.

    Both halves are token objects with the URI's ``id`` and ``object`` label;
    the private key is private, sensitive and not extractable, and can only
    sign. Refuses when any object already has that id (or that label).

    Args:
        uri: A ``pkcs11:`` URI with ``id`` (``object`` recommended), or an
            ``hsm:`` URI.

    Returns:
        The new public key in TUF form.

    Raises:
        KeyLoadError: Bad URI, no module or token, or no or wrong PIN.
        SigningKeyError: The URI has no id, a key with that id or label exists, or
            the token cannot generate the key.
    """
    parsed = parse_pkcs11_uri(uri)
    id_bytes = parsed.id_bytes
    if id_bytes is None:
        raise SigningKeyError(f"{uri}: give the new key an id (id=%NN) in the URI")
    token = _find_token(parsed)
    pin = _require_pin(parsed, token.label)
    p11 = _import_pkcs11()
    attr = p11.Attribute
    with _session(parsed, token, pin, rw=True) as session:
        taken: list[tuple[str, dict[Any, Any]]] = [("id", {attr.ID: id_bytes})]
        if parsed.object_label is not None:
            taken.append(("label", {attr.LABEL: parsed.object_label}))
        for what, query in taken:
            if any(True for _ in session.get_objects(query)):
                raise SigningKeyError(
                    f"{uri}: {parsed.describe_token()} already holds an object with "
                    f"this {what}; refusing to generate over it"
                )
        try:
            public, _private = session.generate_keypair(
                p11.KeyType.EC,
                id=id_bytes,
                label=parsed.object_label,
                store=True,
                capabilities=p11.MechanismFlag.SIGN | p11.MechanismFlag.VERIFY,
                public_template={
                    attr.EC_PARAMS: p11.util.ec.encode_named_curve_parameters("secp256r1"),
                    attr.TOKEN: True,
                    attr.PRIVATE: False,
                    attr.VERIFY: True,
                },
                private_template={
                    attr.TOKEN: True,
                    attr.PRIVATE: True,
                    attr.SENSITIVE: True,
                    attr.EXTRACTABLE: False,
                    attr.SIGN: True,
                    attr.DERIVE: False,
                },
            )
        except p11.PKCS11Error as e:
            raise SigningKeyError(f"{uri}: cannot generate an EC P-256 key: {e!r}") from e
        return _public_key_from_object(parsed, public)
