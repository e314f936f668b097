"""Test support: throw-away SoftHSM2 tokens for PKCS#11 tests.

Usage in a test module::

    from softhsm import SoftHsmToken, softhsm_token

    @pytest.fixture
    def token(tmp_path, monkeypatch):
        with softhsm_token(tmp_path, monkeypatch) as t:
            yield t

    def test_x(token: SoftHsmToken):
        uri = token.uri(key_id=1, object_label="release")
        generate_pkcs11_key(uri)
        signer = load_signer(uri)

Each token lives in its own ``SOFTHSM2_CONF`` / token directory under
``tmp_path``; ``PUMPGUARD_PKCS11_PIN`` and ``PYKCS11LIB`` are set for the test.
When SoftHSM2 or python-pkcs11 is missing the test is skipped, or fails under
``CI=true`` (``scripts/install-test-deps.sh`` installs them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlencode

import pytest

__all__ = [
    "DEFAULT_PIN",
    "DEFAULT_SO_PIN",
    "SoftHsm",
    "SoftHsmToken",
    "find_softhsm_module",
    "require_softhsm",
    "softhsm_token",
]

DEFAULT_PIN = "4711-test-user"
DEFAULT_SO_PIN = "0815-test-so"
PIN_ENV = "PUMPGUARD_PKCS11_PIN"
MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


def find_softhsm_module() -> str | None:
    """Return the real path of the SoftHSM2 PKCS#11 module, or None."""
    for candidate in MODULE_CANDIDATES:
        if os.path.isfile(candidate):
            return os.path.realpath(candidate)
    return None


def _missing() -> str | None:
    """Why SoftHSM2 tests cannot run here, or None when they can."""
    if shutil.which("softhsm2-util") is None:
        return "softhsm2-util is not installed"
    if find_softhsm_module() is None:
        return "the SoftHSM2 PKCS#11 module (libsofthsm2.so) is not installed"
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        return "python-pkcs11 is not installed (pip install -e '.[pkcs11]')"
    return None


def require_softhsm() -> str:
    """Return the SoftHSM2 module path; skip (fail under CI=true) without it."""
    reason = _missing()
    if reason is not None:
        message = f"{reason}; run scripts/install-test-deps.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    module = find_softhsm_module()
    assert module is not None
    return module


@dataclass(frozen=True)
class SoftHsmToken:
    """One initialised SoftHSM2 token and a factory for URIs into it."""

    label: str
    pin: str
    so_pin: str
    module: str

    def uri(
        self,
        key_id: int | None = 1,
        object_label: str | None = None,
        *,
        scheme: Literal["pkcs11", "hsm"] = "pkcs11",
        with_module: bool = True,
        extra: str = "",
    ) -> str:
        """Return a URI naming a key in this token.

        Args:
            key_id: The key's id (one byte for small ids), or None for none.
            object_label: The key's label (``pkcs11:`` only).
            scheme: ``pkcs11`` (RFC 7512) or ``hsm`` (securesystemslib).
            with_module: Add ``module-path`` (else ``$PYKCS11LIB`` is used).
            extra: Appended to the path part (``pkcs11:`` only), e.g. ``;type=private``.
        """
        query = {"module-path": self.module} if with_module else {}
        if scheme == "hsm":
            ident = "" if key_id is None else str(key_id)
            return f"hsm:{ident}?" + urlencode({"label": self.label, **query})
        path = [f"token={quote(self.label, safe='')}"]
        if key_id is not None:
            raw = key_id.to_bytes(max(1, (key_id.bit_length() + 7) // 8), "big")
            path.append("id=" + "".join(f"%{b:02X}" for b in raw))
        if object_label is not None:
            path.append(f"object={quote(object_label, safe='')}")
        text = "pkcs11:" + ";".join(path) + extra
        if query:
            text += "?module-path=" + quote(self.module, safe="/")
        return text


@dataclass(frozen=True)
class SoftHsm:
    """A private SoftHSM2 installation: its config file and token directory."""

    module: str
    conf: Path
    tokendir: Path

    def init_token(
        self, label: str, pin: str = DEFAULT_PIN, so_pin: str = DEFAULT_SO_PIN
    ) -> SoftHsmToken:
        """Initialise a new token in the next free slot and make it visible."""
        env = {**os.environ, "SOFTHSM2_CONF": str(self.conf)}
        result = subprocess.run(
            [
                "softhsm2-util",
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                pin,
                "--so-pin",
                so_pin,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"softhsm2-util --init-token failed: {result.stderr.strip()}")
        self.reload()
        return SoftHsmToken(label=label, pin=pin, so_pin=so_pin, module=self.module)

    def reload(self) -> None:
        """Re-initialise the module in this process so it rereads the tokens.

        SoftHSM2 reads ``SOFTHSM2_CONF`` and scans its token directory in
        ``C_Initialize``; python-pkcs11 keeps one initialised module per path.
        """
        import pkcs11

        pkcs11.lib(self.module).reinitialize()

    def finalize(self) -> None:
        """Finalise the module; the next use initialises it afresh."""
        import pkcs11

        lib = pkcs11.lib(self.module)
        if lib.initialized:
            lib.finalize()


@contextmanager
def softhsm_token(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    label: str = "pumpguard-test",
    pin: str = DEFAULT_PIN,
) -> Iterator[SoftHsmToken]:
    """Create a fresh SoftHSM2 with one token; yield the token.

    Sets ``SOFTHSM2_CONF``, ``PYKCS11LIB`` and ``PUMPGUARD_PKCS11_PIN`` for the
    test (through ``monkeypatch``); finalises the module afterwards.

    Args:
        tmp_path: The test's temporary directory (holds config and tokens).
        monkeypatch: The test's monkeypatch fixture.
        label: The token label.
        pin: The user PIN.
    """
    hsm = softhsm(tmp_path, monkeypatch)
    try:
        token = hsm.init_token(label, pin=pin)
        monkeypatch.setenv(PIN_ENV, pin)
        yield token
    finally:
        hsm.finalize()


def softhsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsm:
    """Create an empty private SoftHSM2 under ``tmp_path`` and point the env at it.

    Call :meth:`SoftHsm.finalize` when done (``softhsm_token`` does).
    """
    module = require_softhsm()
    root = tmp_path / "softhsm"
    tokendir = root / "tokens"
    tokendir.mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokendir}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
    )
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    monkeypatch.setenv("PYKCS11LIB", module)
    return SoftHsm(module=module, conf=conf, tokendir=tokendir)
