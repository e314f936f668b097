"""``repo status``: every role's version, keys, threshold, expiry and health."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tuf.api.metadata import Metadata, Root, Targets

from signer._signing import utcnow
from signer.repository import Repository
from signer.verification import product_releases

__all__ = ["RepoStatus", "RoleStatus", "repo_status"]


@dataclass(frozen=True)
class RoleStatus:
    """One role as ``repo status`` reports it."""

    role: str
    version: int
    expires: datetime
    keyids: tuple[str, ...]
    threshold: int
    valid_signatures: int
    warning: str | None = None
    releases: int | None = None
    latest: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        out: dict[str, Any] = {
            "role": self.role,
            "version": self.version,
            "expires": self.expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "keyids": list(self.keyids),
            "threshold": self.threshold,
            "valid_signatures": self.valid_signatures,
            "warning": self.warning,
        }
        if self.releases is not None:
            out["releases"] = self.releases
            out["latest"] = self.latest
        return out


@dataclass
class RepoStatus:
    """The whole repository's status."""

    roles: list[RoleStatus] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        return {
            "roles": [r.to_json() for r in self.roles],
            "warnings": self.warnings,
            "errors": self.errors,
        }

    def to_text(self) -> str:
        """A table for people."""
        header = f"{'role':<20} {'ver':>5} {'expires':<20} {'sigs':>6}  keys"
        lines = [header, "-" * len(header)]
        for r in self.roles:
            keys = ", ".join(k[:8] for k in r.keyids)
            extra = (
                f"  [{r.releases} releases, latest {r.latest}]" if r.releases is not None else ""
            )
            lines.append(
                f"{r.role:<20} {r.version:>5} {r.expires:%Y-%m-%d %H:%M}Z    "
                f"{r.valid_signatures}/{r.threshold:<3}  {keys}{extra}"
            )
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"ERROR: {e}" for e in self.errors]
        return "\n".join(lines)


def repo_status(repo: Repository, now: datetime | None = None) -> RepoStatus:
    """Inspect the repository: versions, keys, expiry and signature health."""
    now = now or utcnow()
    cfg = repo.config
    state = repo.state()
    status = RepoStatus()
    root = state.root.signed

    def add(role: str, md: Metadata[Any], delegator: Root | Targets, extra: dict[str, Any]) -> None:
        delegated = delegator.get_delegated_role(role)
        result = delegator.get_verification_result(role, md.signed_bytes, md.signatures)
        warning = None
        if md.signed.is_expired(now):
            warning = "EXPIRED"
            status.errors.append(f"{role} expired at {md.signed.expires:%Y-%m-%d %H:%M}Z")
        elif md.signed.expires - timedelta(days=cfg.refresh_for(role)) <= now:
            left = md.signed.expires - now
            warning = f"expires in {left.days} d {left.seconds // 3600} h"
            status.warnings.append(f"{role} {warning}: re-sign it")
        if not result.verified:
            status.errors.append(
                f"{role} v{md.signed.version} has {len(result.signed)} of "
                f"{result.threshold} valid signatures"
            )
        status.roles.append(
            RoleStatus(
                role,
                md.signed.version,
                md.signed.expires,
                tuple(delegated.keyids),
                delegated.threshold,
                len(result.signed),
                warning,
                **extra,
            )
        )

    # Each root version must be signed by its predecessor's keys and its own
    # (TUF spec 5.3.4), or clients updating through it will stop there.
    previous = None
    for version in repo.root_versions():
        root_md = repo.load_root(version)
        r = root_md.signed.get_root_verification_result(
            previous, root_md.signed_bytes, root_md.signatures
        )
        if not r.verified:
            status.errors.append(
                f"root v{version} is not signed by the thresholds of v{version - 1} and v{version}"
            )
        previous = root_md.signed
    add("root", state.root, root, {})
    add("targets", state.targets, root, {})
    for name in sorted(
        state.targets.signed.delegations.roles or {} if state.targets.signed.delegations else {}
    ):
        md = state.product(name)
        if md is None:
            delegated = state.targets.signed.get_delegated_role(name)
            status.roles.append(
                RoleStatus(
                    name,
                    0,
                    now,
                    tuple(delegated.keyids),
                    delegated.threshold,
                    0,
                    "no release yet",
                    0,
                    None,
                )
            )
            continue
        releases = product_releases(md)
        add(
            name,
            md,
            state.targets.signed,
            {"releases": len(releases), "latest": releases[-1].version if releases else None},
        )
    if state.snapshot is None or state.timestamp is None:
        status.warnings.append(
            "snapshot and timestamp are not signed yet: publish or run `repo refresh`"
        )
    else:
        add("snapshot", state.snapshot, root, {})
        add("timestamp", state.timestamp, root, {})
    return status
