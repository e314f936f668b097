"""API tokens: roles, product scope, and the ``require`` decorator.

A token is 32 random bytes shown once at creation; the database keeps only its
sha256 (a high-entropy secret needs no slow hash). Roles: ``admin`` (everything),
``operator`` (devices, rollouts), ``release-engineer`` (publish, for its
products only), ``reviewer`` (read-only).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from pumpguard.release import validate_product
from update_server import audit
from update_server.db import get_session
from update_server.errors import BadRequestError, ForbiddenError, UnauthorizedError
from update_server.models import ApiToken, utcnow
from update_server.roles import ROLES

__all__ = [
    "ROLES",
    "Caller",
    "create_token",
    "current_caller",
    "hash_token",
    "require",
    "revoke_token",
]

# A recognisable prefix lets secret scanners find leaked tokens; not a secret.
TOKEN_PREFIX = "pgt_"  # noqa: S105  # nosec B105
F = TypeVar("F", bound=Callable[..., Any])


def hash_token(secret: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    """Who is calling, from their token."""

    token_id: int
    name: str
    role: str
    products: tuple[str, ...]

    @property
    def actor(self) -> str:
        """How the audit log and the release index name the caller.

        The token id identifies the caller; the name, there for people
        reading the log, is cut to what fits the 128-character actor column
        after the id. A token's name may itself have 128 characters, and
        tokens with such names exist, so cutting keeps every token usable
        where refusing long names at creation would not.
        """
        prefix = f"token:{self.token_id}:"
        return prefix + self.name[: max(0, audit.MAX_ACTOR - len(prefix))]

    def may_publish(self, product: str) -> bool:
        """Whether this caller may publish releases of ``product``."""
        return self.role == "release-engineer" and product in self.products


def create_token(
    session: Session, name: str, role: str, products: Sequence[str] = (), actor: str = "cli"
) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the secret (shown once, never stored).

    Raises:
        BadRequestError: Unknown role, or products given for a role without
            product scope, or a release-engineer token without products.
    """
    if role not in ROLES:
        raise BadRequestError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not name or len(name) > 128:
        raise BadRequestError("a token needs a name of 1-128 characters")
    if role == "release-engineer" and not products:
        raise BadRequestError("a release-engineer token needs at least one product")
    if role != "release-engineer" and products:
        raise BadRequestError(f"{role} tokens are not scoped to products")
    for product in products:
        validate_product(product)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name, role=role, products=sorted(set(products)), token_hash=hash_token(secret)
    )
    session.add(token)
    session.flush()
    audit.append(
        session,
        actor,
        "token.create",
        token_id=token.id,
        name=name,
        role=role,
        products=token.products,
    )
    return token, secret


def revoke_token(session: Session, token_id: int, actor: str = "cli") -> ApiToken:
    """Revoke a token; it stops working at once.

    Raises:
        BadRequestError: No such token, or already revoked.
    """
    token = session.get(ApiToken, token_id)
    if token is None:
        raise BadRequestError(f"no token {token_id}")
    if token.revoked_at is not None:
        raise BadRequestError(f"token {token_id} is already revoked")
    token.revoked_at = utcnow()
    audit.append(session, actor, "token.revoke", token_id=token_id, name=token.name)
    return token


def _authenticate() -> Caller:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret:
        raise UnauthorizedError("an API token is required (Authorization: Bearer ...)")
    digest = hash_token(secret.strip())
    token = (
        get_session()
        .execute(select(ApiToken).where(ApiToken.token_hash == digest))
        .scalar_one_or_none()
    )
    # compare_digest keeps the final check constant-time; the lookup is by hash
    # of the secret, so timing reveals nothing usable about the secret itself.
    if token is None or not hmac.compare_digest(token.token_hash, digest) or token.revoked_at:
        raise UnauthorizedError("the API token is unknown or revoked")
    return Caller(token.id, token.name, token.role, tuple(token.products or ()))


def current_caller() -> Caller:
    """The authenticated caller of this request (after :func:`require`)."""
    caller: Caller = g.caller
    return caller


def require(*roles: str) -> Callable[[F], F]:
    """Require a valid token with one of ``roles`` (admin always passes)."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            caller = _authenticate()
            if caller.role != "admin" and caller.role not in roles:
                raise ForbiddenError(f"a {caller.role} token may not do this")
            g.caller = caller
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator
