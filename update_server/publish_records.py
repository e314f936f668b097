"""Upload records: who is publishing what, committed before the repository is written.

:func:`update_server.publishing.publish` writes the repository and then
commits the index row and the audit entry. The record written here first,
in a transaction of its own, survives a server that dies between the two, so
:func:`update_server.publishing.reconcile_index` indexes that release with
its real publisher, token and signers, and audits it as their publish, not
as the server's (issue 19, finding 7; threat SRV-REPUDIATION).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from tuf.api.metadata import Metadata, Targets

from signer import Repository
from signer.bundle import Bundle
from signer.verification import signature_report
from update_server import audit
from update_server.config import ServerConfig
from update_server.datadir import UnindexedRelease
from update_server.models import Release, Upload, utcnow

__all__ = [
    "PUBLISHING",
    "PublishRecord",
    "find_publisher",
    "finish",
    "for_bundle",
    "index_unindexed",
    "record",
]

logger = logging.getLogger(__name__)

#: The state of a record whose publish has not ended.
PUBLISHING = "publishing"
#: How long a record waits for the SQLite write lock a publish holds (s),
#: as long as a publish waits for the publish lock.
_WAIT = 600.0
_T = TypeVar("_T")


@dataclass(frozen=True)
class PublishRecord:
    """What an upload is about to publish, and who publishes it."""

    actor: str
    token_id: int | None
    product: str
    version: str
    release_counter: int
    metadata_version: int
    firmware_sha256: str
    signers: Sequence[str]
    threshold: int
    bundle_sha256: str = ""


def for_bundle(
    config: ServerConfig,
    bundle: Bundle,
    md: Metadata[Targets],
    actor: str,
    token_id: int | None,
    bundle_sha256: str,
) -> PublishRecord:
    """The record of publishing ``bundle``: its release and the keys that signed it.

    The signers are the delegated keys whose signatures count against the
    repository's current delegation, as the index will hold them.

    Raises:
        BundleError: The bundle's metadata names no release.
        UnknownProductError: The repository has no such product.
        SignerError: The repository cannot be read.
    """
    release = bundle.release(md)
    targets = Repository(config.repo_dir).state().targets.signed
    report = signature_report(targets, bundle.product, md)
    return PublishRecord(
        actor=actor,
        token_id=token_id,
        product=release.product,
        version=release.version,
        release_counter=release.release_counter,
        metadata_version=md.signed.version,
        firmware_sha256=md.signed.targets[release.firmware_path].hashes.get("sha256", ""),
        signers=report.signed,
        threshold=report.threshold,
        bundle_sha256=bundle_sha256,
    )


def _write(factory: sessionmaker[Session], what: Callable[[Session], _T], wait: float) -> _T:
    """Run ``what`` in a transaction of its own and commit it.

    On SQLite a publish in progress holds the database's one write lock for
    as long as it runs, longer than SQLite's 30 s busy timeout for a large
    bundle, so a write is retried until ``wait`` seconds have passed.
    """
    deadline = time.monotonic() + wait
    while True:
        # factory.begin(), with the session at hand to tell its dialect.
        with factory() as session:
            try:
                with session.begin():
                    return what(session)
            except OperationalError as e:
                sqlite = session.get_bind().dialect.name == "sqlite"
                if not (sqlite and "locked" in str(e).lower()) or time.monotonic() > deadline:
                    raise


def record(factory: sessionmaker[Session], rec: PublishRecord) -> int:
    """Commit the record of a publish about to start; returns its id.

    Raises:
        SQLAlchemyError: The database failed; nothing may be published then.
    """

    def insert(session: Session) -> int:
        row = Upload(
            state=PUBLISHING,
            token_id=rec.token_id,
            actor=rec.actor,
            product=rec.product,
            version=rec.version,
            release_counter=rec.release_counter,
            metadata_version=rec.metadata_version,
            firmware_sha256=rec.firmware_sha256,
            signers=sorted(rec.signers),
            threshold=rec.threshold,
            bundle_sha256=rec.bundle_sha256,
        )
        session.add(row)
        session.flush()
        return row.id

    # Waits as the publish lock does: the publish cannot start without it.
    return _write(factory, insert, _WAIT)


def finish(factory: sessionmaker[Session], upload_id: int, state: str) -> None:
    """Mark a record ``done`` or ``failed``. Never raises.

    A record left ``publishing`` (the database failed here, or the server
    died) is harmless: only a release missing from the index is looked up.
    """

    def mark(session: Session) -> None:
        session.execute(
            update(Upload)
            .where(Upload.id == upload_id, Upload.state == PUBLISHING)
            .values(state=state, finished_at=utcnow())
        )

    try:
        # One try: the publish's answer waits for this, not for the next publish.
        _write(factory, mark, 0)
    except SQLAlchemyError:
        logger.exception("marking upload record %d %s failed", upload_id, state)


def find_publisher(
    session: Session,
    product: str,
    version: str,
    metadata_version: int,
    firmware_sha256: str,
) -> Upload | None:
    """The record of the upload that published this release, if one was kept.

    The record must name the same product metadata version and firmware
    hash as the repository, so an upload of another build of that version
    is never taken for its publisher. Uploads marked failed never
    published. Several may match only when the same bundle was sent again
    while the first was publishing and the server died before either was
    marked; the first recorded is taken (both name the same signers).
    """
    return (
        session.execute(
            select(Upload)
            .where(
                Upload.product == product,
                Upload.version == version,
                Upload.metadata_version == metadata_version,
                Upload.firmware_sha256 == firmware_sha256,
                Upload.state != "failed",
            )
            .order_by(Upload.id)
            .limit(1)
        )
        .scalars()
        .first()
    )


def index_unindexed(session: Session, missing: Sequence[UnindexedRelease]) -> int:
    """Index and audit releases the index lacks, in the caller's locked transaction.

    A release whose upload record survived is indexed as published by that
    record's token, with its signers, and audited as that token's
    ``release.publish`` (marked ``reconciled``), as the publish would have
    been had it committed; its record becomes ``reconciled``. Any other (a
    repository written by hand) is indexed as published by ``reconciled``
    and listed in one ``release.reindex`` entry of the server's.

    Returns:
        The number of releases indexed without an upload record.
    """
    unrecorded = []
    for m in missing:
        release = m.release
        sha256 = m.firmware.hashes.get("sha256", "")
        rec = find_publisher(session, release.product, release.version, m.metadata_version, sha256)
        signers = sorted(rec.signers if rec else m.signers)
        session.add(Release.index(release, m.firmware, signers, rec.actor if rec else "reconciled"))
        detail: dict[str, Any] = {
            "product": release.product,
            "version": release.version,
            "release_counter": release.release_counter,
            "metadata_version": m.metadata_version,
            "firmware_sha256": sha256,
            "signers": signers,
            "threshold": rec.threshold if rec else m.threshold,
        }
        if rec is None:
            unrecorded.append(detail)
            continue
        rec.state = "reconciled"
        rec.finished_at = utcnow()
        audit.append(
            session,
            rec.actor,
            "release.publish",
            **detail,
            reconciled=True,
            upload=rec.id,
            token_id=rec.token_id,
            bundle_sha256=rec.bundle_sha256,
        )
    if unrecorded:
        audit.append(
            session, "server", "release.reindex", added=len(unrecorded), releases=unrecorded
        )
    return len(unrecorded)
