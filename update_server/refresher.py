"""Keeping the online roles fresh: snapshot and timestamp are re-signed before they expire.

A pump refuses an expired timestamp or snapshot (TUF spec 5.3.10/5.4.4/5.5.6),
so a server that stopped re-signing would stop every update (threat
TUF-FREEZE turned into a self-inflicted outage). Three things re-sign:

* :func:`refresh_online_roles`, for ``pumpguard server refresh`` (cron);
* the app at start, when due, which covers a server stopped for longer than
  the timestamp's lifetime;
* a daemon thread in every server process when ``refresh_interval > 0``.

The start-up check and every tick of the thread also index releases the
repository has but the database lacks (:func:`update_server.publishing.reconcile_index`).

Each takes the database's publish lock (:mod:`update_server.publishing`) and
:meth:`signer.Repository.refresh` takes the repository's file lock and
re-checks whether a refresh is still due, so several gunicorn workers doing
this at once serialise and all but the first are no-ops.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from signer import OnlineSigners, Repository
from update_server import publishing
from update_server.config import ServerConfig
from update_server.datadir import load_online_signers
from update_server.db import engine_for

__all__ = ["RefreshScheduler", "init_app", "refresh_due", "refresh_online_roles"]

logger = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def refresh_due(repo: Repository, now: datetime | None = None) -> bool:
    """Whether snapshot or timestamp is missing or inside its refresh window.

    The same rule :meth:`signer.Repository.refresh` applies; reading it first
    avoids taking any lock on the (frequent) ticks when nothing is due.
    """
    now = now or _utcnow()
    state = repo.state()
    if state.snapshot is None or state.timestamp is None:
        return True
    cfg = repo.config
    return any(
        md.signed.expires - timedelta(days=cfg.refresh_for(role)) <= now
        for md, role in ((state.snapshot, "snapshot"), (state.timestamp, "timestamp"))
    )


def _refresh(
    config: ServerConfig,
    factory: sessionmaker[Session],
    get_online: Callable[[], OnlineSigners],
    *,
    force: bool,
    now: datetime | None,
) -> bool:
    repo = Repository(config.repo_dir)
    if not force and not refresh_due(repo, now):
        logger.debug("%s: snapshot and timestamp are fresh", repo.path)
        return False
    online = get_online()
    with publishing.locked_session(factory, "refresh"):
        done = repo.refresh(online, force=force, now=now)
    if done:
        timestamp = repo.state().timestamp
        logger.info(
            "%s: re-signed snapshot and timestamp (timestamp v%s, expires %s)",
            repo.path,
            timestamp.signed.version if timestamp else "?",
            timestamp.signed.expires.isoformat() if timestamp else "?",
        )
    return done


def refresh_online_roles(
    config: ServerConfig,
    force: bool = False,
    *,
    now: datetime | None = None,
    online: OnlineSigners | None = None,
) -> bool:
    """Re-sign snapshot and timestamp when due (or ``force``), under the publish lock.

    For ``pumpguard server refresh`` and cron: opens its own database
    connection and loads the online keys only when a refresh is due.

    Args:
        config: The server configuration.
        force: Re-sign even when not due.
        now: Reference time (tests: simulate a long stop).
        online: Signers to use instead of loading the configured keys.

    Returns:
        Whether anything was re-signed.

    Raises:
        KeyLoadError: The online keys cannot be loaded.
        RepositoryError: The repository is missing or malformed.
        PublishFailedError: The publish lock could not be taken.
    """
    engine = engine_for(config.database_url)
    try:
        return _refresh(
            config,
            sessionmaker(engine),
            (lambda: online) if online is not None else (lambda: load_online_signers(config)),
            force=force,
            now=now,
        )
    finally:
        engine.dispose()


class RefreshScheduler:
    """A daemon thread that checks freshness every ``interval`` seconds.

    An error is logged and retried on the next tick; it never ends the thread
    or the server.
    """

    def __init__(
        self,
        config: ServerConfig,
        factory: sessionmaker[Session],
        get_online: Callable[[], OnlineSigners],
        interval: float,
    ) -> None:
        self.config = config
        self.interval = interval
        self.ticks = 0
        self.refreshes = 0
        self.errors = 0
        self._factory = factory
        self._get_online = get_online
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pumpguard-refresh", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self, timeout: float | None = 10) -> None:
        """Stop the thread (waits for a tick in progress)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """Whether the thread is running."""
        return self._thread.is_alive()

    def tick(self) -> bool:
        """One freshness check, then one index check; True if it re-signed. Never raises.

        The index check (:func:`update_server.publishing.reconcile_index`)
        indexes a release that is visible to pumps but missing from the
        database, after a publish whose commit failed; it reads the
        repository and the index and takes the lock only when one is
        missing. Each step runs even when the other fails.
        """
        done = False
        try:
            done = _refresh(self.config, self._factory, self._get_online, force=False, now=None)
        except Exception:
            self.errors += 1
            logger.exception("refreshing snapshot and timestamp failed; retrying next tick")
        if done:
            self.refreshes += 1
        try:
            publishing.reconcile_index(self._factory, self.config)
        except Exception:
            self.errors += 1
            logger.exception("indexing published releases failed; retrying next tick")
        self.ticks += 1
        return done

    def _run(self) -> None:
        logger.info("checking snapshot and timestamp freshness every %s s", self.interval)
        while not self._stop.wait(self.interval):
            self.tick()


def init_app(app: Flask) -> None:
    """Re-sign now if due, then start the scheduler when ``refresh_interval > 0``."""
    config: ServerConfig = app.config["PUMPGUARD"]
    factory: sessionmaker[Session] = app.extensions["pumpguard.db"]

    def get_online() -> OnlineSigners:
        return publishing.online_signers(app)

    # Separate steps: a failure of one must not skip the other.
    try:
        # A crash between publishing and indexing leaves a published release
        # unindexed; check-ins assign from the index, so restore it first.
        publishing.reconcile_index(factory, config)
    except Exception:
        logger.exception("start-up indexing of published releases failed")
    try:
        # The server may have been stopped for longer than the timestamp's
        # lifetime: pumps would refuse to update until it is re-signed.
        _refresh(config, factory, get_online, force=False, now=None)
    except Exception:
        logger.exception("start-up refresh of snapshot and timestamp failed")
    if config.refresh_interval > 0:
        scheduler = RefreshScheduler(config, factory, get_online, config.refresh_interval)
        app.extensions["pumpguard.refresher"] = scheduler
        scheduler.start()
