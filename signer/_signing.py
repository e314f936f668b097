"""Signing helpers shared by the repository and bundle code."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Root, Targets
from tuf.api.serialization.json import JSONSerializer

from signer.errors import KeyLoadError, SignerError

#: Published metadata is compact: every byte is downloaded by every pump.
SERIALIZER = JSONSerializer(compact=True)


def utcnow() -> datetime:
    """Now, in UTC, to the second (TUF timestamps have no fractions)."""
    return datetime.now(UTC).replace(microsecond=0)


def expiry(days: float, now: datetime | None = None) -> datetime:
    """The expiry date ``days`` from ``now``."""
    return ((now or utcnow()) + timedelta(days=days)).replace(microsecond=0)


def sign_role(
    md: Metadata[Any],
    delegator: Root | Targets,
    role: str,
    signers: Iterable[Signer],
    *,
    replace: bool = True,
) -> list[str]:
    """Sign ``md`` with every signer whose key ``delegator`` trusts for ``role``.

    Signers holding keys of other roles are skipped, so one ``--sign`` list can
    serve several roles. Existing signatures are dropped first when
    ``replace`` (the signed content changed), kept otherwise.

    Returns:
        The keyids that signed.

    Raises:
        SignerError: The signatures do not reach the role's threshold.
    """
    keyids = set(delegator.get_delegated_role(role).keyids)
    if replace:
        md.signatures.clear()
    signed = []
    for s in signers:
        if s.public_key.keyid in keyids:
            md.sign(s, append=True)
            signed.append(s.public_key.keyid)
    result = delegator.get_verification_result(role, md.signed_bytes, md.signatures)
    if not result.verified:
        raise SignerError(
            f"cannot sign {role}: {len(result.signed)} of the {result.threshold} "
            f"required key(s) given; {role} keys are {', '.join(_short(k) for k in sorted(keyids))}"
        )
    return signed


def require_signer(signer: Signer, root: Root, role: str) -> Signer:
    """Return ``signer`` if root names its key for ``role``.

    Raises:
        KeyLoadError: The key is not one of the role's keys.
    """
    keyids = root.get_delegated_role(role).keyids
    if signer.public_key.keyid not in keyids:
        raise KeyLoadError(
            f"the key given for {role} ({_short(signer.public_key.keyid)}) is not a "
            f"{role} key of root v{root.version}"
        )
    return signer


def _short(keyid: str) -> str:
    return keyid[:12]


def short_keyids(keyids: Sequence[str]) -> str:
    """Abbreviated keyids for one-line messages."""
    return ", ".join(_short(k) for k in keyids)
