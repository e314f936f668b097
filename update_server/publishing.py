"""Publishing a verified release bundle into the server's repository.

Every publish (and every re-signing of snapshot and timestamp, see
:mod:`update_server.refresher`) runs while holding the database's publish
lock: the single ``publish_lock`` row, updated first thing in the
transaction. On PostgreSQL the UPDATE takes the row lock (as ``SELECT ... FOR
UPDATE`` would) until commit, so publishes from every worker and host
serialise; on SQLite the UPDATE makes the transaction the database's one
writer (the ``BEGIN IMMEDIATE`` equivalent) until commit. Inside it,
:meth:`signer.Repository.publish` takes the repository's own file lock,
runs every check of :func:`signer.verify_release_update` once, on the
copies it then publishes (each file is read once), before anything is
visible, and replaces ``timestamp.json`` last and atomically, so a pump
polling meanwhile sees the old or the new repository, never a mixture
(TUF spec 5.3/5.4; threats TUF-MIX-AND-MATCH, TUF-ARBITRARY, TUF-ROLLBACK).

The database is written before the repository: in the same transaction,
:meth:`signer.Repository.publish` verifies the bundle and, still under its
lock and before anything is visible, hands the verified release back here,
where the index row and the audit entry are flushed; only then does it
write, and the transaction commits after it returned. A database failure
therefore leaves the repository as it was, and a repository failure rolls
the rows back. The one window left, a commit failing after the repository
was written, leaves a release visible to pumps but not indexed, as does a
server that dies right after ``timestamp.json`` was replaced;
:func:`reconcile_index` indexes it at once, or on the refresher's next tick,
or at the next start, with the publisher, token and signers of the upload
record each publish commits before it writes anything
(:mod:`update_server.publish_records`; threat SRV-REPUDIATION).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from tuf.api.metadata import Metadata, Targets

from pumpguard.errors import ConfigError, ReleaseContractError
from signer import (
    BundleError,
    OnlineSigners,
    PublishRefusedError,
    Repository,
    SignerError,
    UnknownProductError,
    VerifiedRelease,
)
from signer.bundle import Bundle
from update_server import audit, publish_records
from update_server.config import ServerConfig
from update_server.datadir import load_online_signers, unindexed_releases
from update_server.errors import ApiError, RefusedError
from update_server.models import PublishLock, Release
from update_server.redact import public_message

__all__ = [
    "LOCK_TIMEOUT",
    "MAX_VERSION",
    "LockBusyError",
    "PublishFailedError",
    "locked_session",
    "online_signers",
    "publish",
    "publish_lock",
    "reconcile_index",
    "release_json",
]

logger = logging.getLogger(__name__)

#: How long a publish or refresh waits for another one to finish.
LOCK_TIMEOUT = 600.0
#: The longest version the release index holds (``Release.version``).
MAX_VERSION = 64


class PublishFailedError(ApiError):
    """The server could not publish for a reason of its own (keys, storage, database)."""

    status = 500
    code = "server_error"


def _holder(what: str) -> str:
    return f"{what} pid {os.getpid()} thread {threading.get_ident()} on {socket.gethostname()}"[
        :128
    ]


class LockBusyError(PublishFailedError):
    """SQLite's busy timeout passed while another transaction held the lock.

    :func:`locked_session` rolls the attempt back and tries again until its
    own timeout.
    """


def publish_lock(session: Session, what: str, timeout: float = LOCK_TIMEOUT) -> None:
    """Take the publish lock in ``session``'s transaction (held until it ends).

    This must be the transaction's first statement: on SQLite a transaction
    that already read could not be upgraded to the writer after another
    writer committed.

    Raises:
        LockBusyError: SQLite: the busy timeout (30 s) passed; roll back and
            try again in a new transaction (:func:`locked_session` does).
        PublishFailedError: The lock row is missing, or it could not be
            taken within ``timeout`` seconds (PostgreSQL), or the database
            failed.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    try:
        if postgres:
            # Wait for the row lock at most `timeout`, then fail instead of hanging.
            ms = f"{max(1, int(timeout * 1000))}ms"
            session.execute(select(func.set_config("lock_timeout", ms, True)))
        result = session.execute(
            update(PublishLock).where(PublishLock.id == 1).values(holder=_holder(what))
        )
    except OperationalError as e:
        locked = "lock" in str(e).lower()
        if locked and not postgres:
            raise LockBusyError("another publish or refresh holds the lock") from e
        reason = "another publish or refresh holds the lock" if locked else "database error"
        # The driver's text may name hosts, roles or statements: logged, not answered.
        logger.error("taking the publish lock for %s failed: %s", what, e.orig)
        raise PublishFailedError(reason) from e
    if getattr(result, "rowcount", 1) != 1:
        raise PublishFailedError("the publish_lock row is missing; run the migrations")


@contextmanager
def locked_session(
    factory: sessionmaker[Session], what: str, timeout: float = LOCK_TIMEOUT
) -> Iterator[Session]:
    """A transaction holding the publish lock: committed on success, else rolled back.

    The transaction is ``factory.begin()``. SQLite gives up after its busy
    timeout (30 s), and a publish of a large bundle may hold the lock longer,
    so a busy attempt is rolled back and retried until ``timeout`` passed.

    Raises:
        PublishFailedError: The lock could not be taken (see :func:`publish_lock`).
    """
    deadline = time.monotonic() + timeout
    while True:
        entered = False
        try:
            with factory.begin() as session:
                publish_lock(session, what, timeout)
                entered = True
                yield session
            return
        except LockBusyError as e:
            if entered or time.monotonic() > deadline:
                cause = e.__cause__
                logger.error("taking the publish lock for %s failed: %s", what, cause)
                raise


def online_signers(app: Flask) -> OnlineSigners:
    """The online snapshot and timestamp signers, loaded once per app.

    Raises:
        PublishFailedError: The keys cannot be loaded.
    """
    cached: OnlineSigners | None = app.extensions.get("pumpguard.online")
    if cached is not None:
        return cached
    lock: threading.Lock = app.extensions.setdefault("pumpguard.online.lock", threading.Lock())
    with lock:
        cached = app.extensions.get("pumpguard.online")
        if cached is None:
            try:
                cached = load_online_signers(app.config["PUMPGUARD"])
            except (SignerError, ConfigError) as e:
                # The reason names key files or PKCS#11 modules: logged, not answered.
                logger.error("the online keys cannot be loaded: %s", e)
                raise PublishFailedError(
                    "the online keys cannot be loaded; the server log says why"
                ) from e
            app.extensions["pumpguard.online"] = cached
        return cached


def _iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    # SQLite returns naive datetimes; every stored time is UTC.
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def release_json(row: Release) -> dict[str, Any]:
    """The API form of a release index row."""
    return {
        "id": row.id,
        "product": row.product,
        "version": row.version,
        "release_counter": row.release_counter,
        "hardware_ids": list(row.hardware_ids or []),
        "firmware": {
            "path": row.firmware_path,
            "sha256": row.firmware_sha256,
            "length": row.firmware_length,
        },
        "sbom_path": row.sbom_path,
        "notes": row.notes,
        "signed_by": list(row.signed_by or []),
        "published_at": _iso(row.published_at),
        "published_by": row.published_by,
    }


def _check_fits(version: str) -> None:
    """Refuse a release the index cannot hold, before anything is written.

    Raises:
        RefusedError: The version is longer than ``Release.version``.
    """
    if len(version) > MAX_VERSION:
        raise RefusedError(
            f"version {version[:24]}... has {len(version)} characters; "
            f"this server indexes versions of at most {MAX_VERSION}"
        )


def publish(
    factory: sessionmaker[Session],
    config: ServerConfig,
    online: OnlineSigners,
    bundle: Bundle,
    actor: str,
    now: datetime | None = None,
    *,
    token_id: int | None = None,
    bundle_sha256: str = "",
) -> dict[str, Any]:
    """Verify and publish an opened bundle, index it and audit it, under the lock.

    First, in a transaction of its own, the upload record says who publishes
    what (:mod:`update_server.publish_records`). Then, in one transaction
    holding the publish lock, :meth:`signer.Repository.publish` verifies the
    bundle once under the repository lock; before it writes, the index row
    and the audit entry of what it verified are written (not committed);
    then it writes the repository (``timestamp.json`` last) with exactly
    the verified bytes, and only then the transaction commits. A database
    failure before that leaves the repository as it was, so the same
    bundle can be sent again; a repository failure rolls the rows back. If
    the commit itself fails, or the server dies, the release is visible to
    pumps but not indexed: :func:`reconcile_index` runs at once (and on
    every refresher tick, and at start) to index it with the publisher,
    token and signers of the record.

    Args:
        factory: Session factory of the server's database.
        config: Server configuration (the repository is ``config.repo_dir``).
        online: Snapshot and timestamp signers.
        bundle: The opened bundle.
        actor: Who publishes, for the index and the audit log (at most
            :data:`update_server.audit.MAX_ACTOR` characters).
        now: Reference time (tests).
        token_id: The API token publishing, for the record.
        bundle_sha256: sha256 of the uploaded tar, for the record.

    Returns:
        The published release in its API form (:func:`release_json`).

    Raises:
        RefusedError: The bundle fails a check (threshold, keys, paths,
            hashes, versions, release counter, SBOM binding, malformed, a
            version longer than the index holds); the repository and the
            database index are unchanged.
        PublishFailedError: The server failed (storage, database).
    """
    try:
        md = bundle.metadata()
    except BundleError as e:
        raise RefusedError(public_message(str(e), config)) from e
    _check_fits(bundle.version)
    try:
        rec = publish_records.for_bundle(config, bundle, md, actor, token_id, bundle_sha256)
    except (BundleError, UnknownProductError) as e:
        raise RefusedError(public_message(str(e), config)) from e
    except (SignerError, OSError) as e:
        logger.error("reading the repository to record %s failed: %s", bundle.product, e)
        raise PublishFailedError("the server cannot read its repository") from e
    _check_fits(rec.version)
    try:
        upload_id = publish_records.record(factory, rec)
    except SQLAlchemyError as e:
        logger.exception("recording the upload of %s %s failed", bundle.product, bundle.version)
        raise PublishFailedError("recording the upload failed; nothing was published") from e
    result = _publish_locked(factory, config, online, bundle, md, rec, upload_id, now)
    publish_records.finish(factory, upload_id, "done")
    logger.info(
        "published %s %s (counter %s) by %s",
        result["product"],
        result["version"],
        result["release_counter"],
        actor,
    )
    return result


def _publish_locked(
    factory: sessionmaker[Session],
    config: ServerConfig,
    online: OnlineSigners,
    bundle: Bundle,
    md: Metadata[Targets],
    rec: publish_records.PublishRecord,
    upload_id: int,
    now: datetime | None,
) -> dict[str, Any]:
    now = now or datetime.now(UTC).replace(microsecond=0)
    actor = rec.actor
    repo = Repository(config.repo_dir)
    visible = False  # whether Repository.publish may have written anything
    result: dict[str, Any] = {}
    try:
        with locked_session(factory, f"publish {bundle.product} {bundle.version}") as session:

            def record_release(verified: VerifiedRelease) -> None:
                # Called by Repository.publish under its lock, once it verified
                # the copies it is about to publish and before anything is
                # visible: the index row and the audit entry are written, and
                # may fail, while a failure still leaves the repository as it was.
                nonlocal visible
                release = verified.release
                _check_fits(release.version)
                if tuple(sorted(verified.signatures.signed)) != tuple(rec.signers):
                    # The delegation changed after the record was written, which
                    # must name the keys that signed what is published.
                    raise RefusedError(
                        "the product's keys changed during the upload; send it again"
                    )
                firmware = verified.new_targets[release.firmware_path]
                row = Release.index(release, firmware, verified.signatures.signed, actor)
                session.add(row)
                session.flush()
                audit.append(
                    session,
                    actor,
                    "release.publish",
                    product=release.product,
                    version=release.version,
                    release_counter=release.release_counter,
                    metadata_version=md.signed.version,
                    firmware_sha256=row.firmware_sha256,
                    signers=sorted(verified.signatures.signed),
                    threshold=verified.signatures.threshold,
                )
                result.update(release_json(row))
                visible = True

            # One verification, under both locks, of the bytes then published.
            repo.publish(
                bundle.product,
                md,
                bundle.files(),
                online,
                now,
                claimed_version=bundle.version,
                before_write=record_release,
            )
            # Leaving the block commits.
    except (PublishRefusedError, BundleError, UnknownProductError, ReleaseContractError) as e:
        # Refused by Repository.publish before anything was written; the rows
        # are rolled back.
        logger.warning("refused %s %s from %s: %s", bundle.product, bundle.version, actor, e)
        _after_failure(factory, config, False, upload_id)
        raise RefusedError(public_message(str(e), config)) from e
    except (SignerError, OSError) as e:
        logger.error("publishing %s %s failed: %s", bundle.product, bundle.version, e)
        _after_failure(factory, config, visible, upload_id)
        # An OSError's text names the file; its strerror does not.
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise PublishFailedError(f"publishing failed: {public_message(reason, config)}") from e
    except SQLAlchemyError as e:
        # Statements and parameters go to the log, not to the client.
        logger.exception("recording %s %s failed", bundle.product, bundle.version)
        if _after_failure(factory, config, visible, upload_id):
            raise PublishFailedError(
                "recording the release failed after it was published; "
                "list the releases before sending it again"
            ) from e
        raise PublishFailedError("recording the release failed; nothing was published") from e
    except BaseException:
        _after_failure(factory, config, visible, upload_id)
        raise
    return result


def _after_failure(
    factory: sessionmaker[Session], config: ServerConfig, visible: bool, upload_id: int
) -> bool:
    """After a failed publish: mark its record failed, or index what it may have published.

    A publish that may have reached the repository keeps its record
    ``publishing``, for :func:`reconcile_index` to index the release with.

    Returns:
        Whether the repository may have been written (``visible``).
    """
    if not visible:
        publish_records.finish(factory, upload_id, "failed")
        return False
    try:
        reconcile_index(factory, config)
    except Exception:
        # The database may still be down; the refresher's next tick retries.
        logger.exception("indexing after the failed publish failed; the refresher retries")
    return True


def reconcile_index(factory: sessionmaker[Session], config: ServerConfig) -> int:
    """Index releases the repository lists but the database lacks (after a crash).

    The comparison runs without the lock; only when something is missing is
    the lock taken (and the comparison repeated under it), so starting a
    server never waits for a publish in progress. Each release is indexed
    and audited with the publisher, token and signers of its upload record
    where one survived (:func:`update_server.publish_records.index_unindexed`;
    threat SRV-REPUDIATION).

    Returns:
        The number of releases added.
    """
    repo = Repository(config.repo_dir)
    with factory() as session:
        if not unindexed_releases(session, repo):
            return 0
    with locked_session(factory, "reconcile index") as session:
        missing = unindexed_releases(session, repo)
        unrecorded = publish_records.index_unindexed(session, missing)
        if missing:
            logger.warning(
                "indexed %d published release(s) the database lacked (%d without upload record)",
                len(missing),
                unrecorded,
            )
        return len(missing)
