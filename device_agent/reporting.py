"""Talking to the update server: signed check-ins and a durable event outbox.

Every request is signed with the pump's enrolled Ed25519 key (the contract in
:mod:`pumpguard.device_auth`, threat SRV-DEVICE-SPOOF). Events are first written
to the outbox on the pump's own storage and only removed once the server has
stored them, so an update's outcome is reported even if the server was down or
the pump lost power right after it happened. Polling backs off exponentially
with full jitter when the server is unreachable, so a fleet coming back from an
outage does not hammer it in lockstep.

Requests go through the agent's one HTTP client
(:class:`device_agent.httpclient.AgentHttp`, shared with the TUF fetcher):
each check-in and event post has a deadline on the whole exchange, not a gap
timeout, so a server dripping its answer (body or head) cannot hold the agent
(threat AGT-SLOW); the answer must be framed by a ``Content-Length`` of at
most 64 KiB, no chunked or close-delimited body (threat TUF-ENDLESS-DATA);
redirects are refused.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tuf.api import exceptions

from device_agent import _durable
from device_agent.errors import AgentConfigError, TransferError
from device_agent.httpclient import AgentHttp, Deadline
from pumpguard.contract import (
    MAX_EVENTS,
    CheckinRequest,
    Event,
    EventBatch,
    EventKind,
    RefusalReason,
    http_reason,
)
from pumpguard.device_auth import sign_request
from pumpguard.http import error_message

__all__ = [
    "Assignment",
    "CheckinAnswer",
    "Outbox",
    "ServerClient",
    "backoff_delay",
    "load_device_key",
]

logger = logging.getLogger(__name__)

_EVENT_RE = re.compile(r"([0-9]{12})\.json", re.ASCII)
_MAX_EVENTS_PER_POST = MAX_EVENTS
_MAX_OUTBOX = 1000
_MAX_ANSWER = 64 * 1024
_MAX_DETAIL_TEXT = 400
# Bounds of the poll interval the server may ask for (seconds).
_MIN_POLL_INTERVAL = 1.0
_MAX_POLL_INTERVAL = 86400.0


def load_device_key(path: Path) -> Ed25519PrivateKey:
    """The pump's Ed25519 private key (PKCS#8 PEM from ``pumpguard device keygen``).

    Raises:
        AgentConfigError: Unreadable, or not an unencrypted Ed25519 key.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AgentConfigError(f"cannot read device key {path}: {e.strerror}") from e
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise AgentConfigError(f"device key {path} is not an unencrypted PEM key") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise AgentConfigError(f"device key {path} is not an Ed25519 key")
    return key


def backoff_delay(interval: float, failures: int, cap: float, rng: random.Random) -> float:
    """Seconds until the next poll after ``failures`` consecutive failures.

    No failure: the server's poll interval with +-10 % jitter (spreads a fleet
    that booted together). After failures: "full jitter" exponential backoff,
    uniform in [0, min(cap, interval * 2**failures)].
    """
    if failures <= 0:
        return interval * rng.uniform(0.9, 1.1)
    ceiling = min(cap, interval * 2 ** min(failures, 32))
    return rng.uniform(min(interval, ceiling) / 10, ceiling)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Outbox:
    """Events waiting for the server, one small file each, in order."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "outbox"

    def _names(self) -> list[str]:
        try:
            names = [p.name for p in self.dir.iterdir() if _EVENT_RE.fullmatch(p.name)]
        except FileNotFoundError:
            return []
        return sorted(names)

    def append(self, kind: EventKind, detail: Mapping[str, Any] | None = None) -> None:
        """Queue one event durably."""
        _durable.make_dirs_durable(self.dir, "outbox")
        names = self._names()
        # A pump offline for months must not fill its storage: the oldest
        # events go first (the newest say how things ended).
        for stale in names[: max(0, len(names) - _MAX_OUTBOX + 1)]:
            logger.warning("outbox full: dropping event %s", stale)
            _durable.remove(self.dir / stale, "outbox drop")
        seq = int(names[-1][:12]) + 1 if names else 1
        event: Event = {"kind": kind, "at": _now(), "detail": _clip(dict(detail or {}))}
        _durable.atomic_write(
            self.dir / f"{seq:012d}.json", json.dumps(event, sort_keys=True).encode(), "outbox"
        )
        logger.info("queued event %s %s", kind, event["detail"])

    def pending(self) -> list[tuple[str, Event]]:
        """Queued events, oldest first, as (file name, event)."""
        out = []
        for name in self._names():
            try:
                event = json.loads((self.dir / name).read_bytes())
            except (OSError, ValueError):
                # A torn file cannot happen with atomic writes; if storage
                # corrupted one anyway, it must not block every later event.
                logger.warning("outbox: dropping unreadable event %s", name)
                _durable.remove(self.dir / name, "outbox drop")
                continue
            out.append((name, event))
        return out

    def acknowledge(self, names: list[str]) -> None:
        """Remove events the server has stored."""
        for name in names:
            _durable.remove(self.dir / name, "outbox ack")

    def flush(self, client: ServerClient) -> int:
        """Deliver everything queued; returns how many were delivered.

        Raises:
            TransferError: The server could not be reached; events stay queued.
        """
        delivered = 0
        while batch := self.pending()[:_MAX_EVENTS_PER_POST]:
            try:
                client.post_events([event for _, event in batch])
            except _RejectedError as e:
                # The server refused the batch as malformed: retrying cannot
                # help, and keeping it would block every later event.
                logger.error("server refused queued events, dropping them: %s", e)
            self.acknowledge([name for name, _ in batch])
            delivered += len(batch)
        return delivered


def _clip(detail: dict[str, Any]) -> dict[str, Any]:
    # The server caps an event's detail at 2 KiB; long error texts are cut
    # here rather than having the whole batch refused.
    return {k: (v[:_MAX_DETAIL_TEXT] if isinstance(v, str) else v) for k, v in detail.items()}


def _poll_interval(raw: object) -> float:
    """The server's poll interval as seconds in [1, 86400].

    Only a finite JSON number is an interval: NaN (which Python's JSON parser
    accepts) would survive the clamp and make every wait return at once, so a
    compromised server could make the pump poll in a tight loop, writing its
    state to flash on every poll. A boolean is not a number either.

    Raises:
        ValueError: Not a finite number.
    """
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"poll_interval must be a number, not {type(raw).__name__}")
    if isinstance(raw, float) and not math.isfinite(raw):
        raise ValueError(f"poll_interval must be finite, not {raw!r}")
    # Clamped before converting: float() of a huge JSON integer overflows.
    return float(min(max(raw, _MIN_POLL_INTERVAL), _MAX_POLL_INTERVAL))


class _RejectedError(TransferError):
    """The server answered 4xx: the request itself is wrong, do not retry it."""


@dataclass(frozen=True)
class Assignment:
    """The release the server assigns this pump (not trusted: TUF decides)."""

    product: str
    version: str
    release_counter: int
    path: str


@dataclass(frozen=True)
class CheckinAnswer:
    """The server's answer to a check-in."""

    assigned: Assignment | None
    poll_interval: float


class ServerClient:
    """Signed requests to ``/api/v1/devices/<id>/...``.

    Args:
        base_url: The update server.
        device_id: The pump's enrolled id.
        key: The pump's enrolled Ed25519 key.
        http: The agent's shared HTTP client.
        timeout: Seconds of server time one request may take in total
            (connect, request, response head and body).
        user_agent: Sent as ``User-Agent``.
    """

    def __init__(
        self,
        base_url: str,
        device_id: str,
        key: Ed25519PrivateKey,
        http: AgentHttp,
        timeout: float,
        *,
        user_agent: str = "pumpguard-agent",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.device_id = device_id
        self._key = key
        self._http = http
        self._timeout = timeout
        self._user_agent = user_agent
        self._prefix = urlsplit(self.base_url).path

    def _post(self, suffix: str, doc: CheckinRequest | EventBatch) -> Any:
        path = f"{self._prefix}/api/v1/devices/{self.device_id}/{suffix}"
        body = json.dumps(doc, separators=(",", ":")).encode()
        headers = sign_request(self._key, self.device_id, "POST", path, body)
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = self._user_agent
        url = f"{self.base_url}/api/v1/devices/{self.device_id}/{suffix}"
        try:
            # One deadline for the whole exchange (threat AGT-SLOW), and an
            # answer framed by a Content-Length of at most 64 KiB (threat
            # TUF-ENDLESS-DATA): a hostile server cannot hold the agent here.
            response = self._http.open(
                "POST",
                url,
                deadline=Deadline(self._timeout, url),
                headers=headers,
                body=body,
                connect_timeout=self._timeout,
                read_timeout=self._timeout,
            )
            data = response.read_all(_MAX_ANSWER)
        except exceptions.SlowRetrievalError as e:
            raise TransferError(
                f"the update server did not answer {suffix} in time: {e}",
                reason=RefusalReason.SLOW_RETRIEVAL,
            ) from e
        except exceptions.DownloadLengthMismatchError as e:
            raise TransferError(f"the update server's answer to {suffix} is too large: {e}") from e
        except exceptions.DownloadError as e:
            raise TransferError(f"cannot reach the update server at {self.base_url}: {e}") from e
        if 300 <= response.status < 400:
            # Redirects are refused: the server's API has fixed URLs.
            raise TransferError(
                f"update server answered {suffix} with a redirect ({response.status}): refused",
                reason=http_reason(response.status),
            )
        if response.status >= 400:
            message = error_message(data, response.reason)
            error = _RejectedError if 400 <= response.status < 500 else TransferError
            if response.status in (401, 403, 409):
                # Clock skew, revoked enrollment or a nonce collision: the
                # batch itself is fine, try again later.
                error = TransferError
            raise error(f"update server refused {suffix} ({response.status}): {message}")
        try:
            return json.loads(data) if data else {}
        except ValueError as e:
            raise TransferError(f"the update server's answer to {suffix} is not JSON") from e

    def checkin(self, report: CheckinRequest) -> CheckinAnswer:
        """Report the pump's state; learn its assignment and poll interval.

        Raises:
            TransferError: The server is unreachable or refused the check-in.
        """
        doc = self._post("checkin", report)
        try:
            raw = doc.get("assigned")
            assigned = None
            if raw is not None:
                assigned = Assignment(
                    product=str(raw["product"]),
                    version=str(raw["version"]),
                    release_counter=int(raw["release_counter"]),
                    path=str(raw["firmware"]["path"]),
                )
            interval = _poll_interval(doc.get("poll_interval", 300))
        except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as e:
            # OverflowError: int() of an infinite release_counter.
            raise TransferError(f"the update server's check-in answer is malformed: {e}") from e
        return CheckinAnswer(assigned, interval)

    def post_events(self, events: list[Event]) -> None:
        """Deliver events (at most :data:`pumpguard.contract.MAX_EVENTS`)."""
        batch: EventBatch = {"events": events}
        self._post("events", batch)
