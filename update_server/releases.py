"""``/api/v1/releases``: publish a signed release bundle; list published releases.

``POST /api/v1/releases?product=P`` takes the bundle ``.tar`` as the request
body (``application/x-tar``, with a ``Content-Length``), from a
release-engineer token scoped to ``P`` (or an admin). The server trusts
neither the uploader nor the bundle: the bundle must pass every check of the
local publish (threshold of the product's delegated keys, paths, hashes,
versions, release counter, SBOM binding) before any byte of it becomes
visible, so a stolen token can publish nothing the release engineers did not
sign (threat SRV-TOKEN-THEFT; TUF spec 5.6/5.7).

What the upload may cost is decided before its body is read (issue 19,
finding 4; threat SRV-DOS): the token's role and its scope over the declared
product (403), the declared length (413, 411 without one), and a free upload
slot of the token and of the machine (429 and 503, with Retry-After). The
body is then streamed into the bundle reader, which counts members and
checks sizes as each header is read, so a tar of a million members costs
its first 65 headers. A token scoped to one product may leave ``product``
out: it can only mean that one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, BinaryIO, cast

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from sqlalchemy import func, select
from werkzeug.exceptions import (
    LengthRequired,
    RequestEntityTooLarge,
    ServiceUnavailable,
    TooManyRequests,
)

from pumpguard.errors import ReleaseContractError
from pumpguard.release import validate_product
from signer import BundleError
from signer.bundle import open_bundle_stream
from update_server import devices, publishing, spool
from update_server.auth import Caller, current_caller, require
from update_server.config import ServerConfig
from update_server.db import get_session
from update_server.errors import (
    ApiError,
    BadRequestError,
    ForbiddenError,
    PayloadTooLargeError,
    RefusedError,
)
from update_server.models import Release
from update_server.redact import public_message

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "HEAD_ONLY",
    "MAX_UPLOADS",
    "MAX_UPLOADS_PER_TOKEN",
    "UPLOAD_RETRY_AFTER",
    "bp",
    "init_app",
]

logger = logging.getLogger(__name__)

bp = Blueprint("releases", __name__, url_prefix="/api/v1/releases")

BUNDLE_MEDIA_TYPE = "application/x-tar"
#: Uploads in progress on this machine at most, across every worker (threat SRV-DOS).
MAX_UPLOADS = 4
#: Uploads in progress with one token at most.
MAX_UPLOADS_PER_TOKEN = 2
#: Seconds a client refused a slot is asked to wait (``Retry-After``).
UPLOAD_RETRY_AFTER = 30
#: WSGI environ key set by ``pumpguard server run`` to judge an upload from
#: its head alone (update_server._guarded_waitress). A client cannot set it:
#: its headers reach the environ only as ``HTTP_*`` keys.
HEAD_ONLY = "pumpguard.head_only"
_CHUNK = 1 << 20
_MAX_LIMIT = 1000


class UnsupportedMediaTypeError(ApiError):
    """The request body is not of a media type the endpoint takes."""

    status = 415
    code = "unsupported_media_type"


class _Body:
    """The request body as the bundle reader reads it: counted, hashed, bounded."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._sha256 = hashlib.sha256()
        self.received = 0

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of the body (never past the limit)."""
        want = self._limit + 1 - self.received
        try:
            chunk = self._stream.read(want if size < 0 else min(size, want))
        except OSError as e:
            # The client's connection broke or timed out: not this server's failure.
            raise BadRequestError(f"the upload broke off after {self.received} bytes") from e
        self.received += len(chunk)
        if self.received > self._limit:
            # Only a server that does not bound the body by its length gets here.
            raise PayloadTooLargeError(f"the bundle exceeds this server's {self._limit} bytes")
        self._sha256.update(chunk)
        return chunk

    def drain(self) -> None:
        """Read what follows the tar's end (padding), so the hash covers the whole body."""
        while self.read(_CHUNK):
            pass

    def sha256(self) -> str:
        """sha256 of the bytes read so far."""
        return self._sha256.hexdigest()


def _declared_product(caller: Caller) -> str | None:
    """The product the upload declares, checked against the token before the body.

    Returns:
        The product, or None for an admin that declared none (it may publish
        every product).

    Raises:
        BadRequestError: Missing for a token of several products, given
            twice, or not a product name.
        ForbiddenError: The token may not publish that product.
    """
    values = request.args.getlist("product")
    if not values:
        if caller.role == "admin":
            return None
        if len(caller.products) == 1:
            return caller.products[0]
        raise BadRequestError(
            "this token may publish several products; name the bundle's: "
            "POST /api/v1/releases?product=<product>"
        )
    if len(values) > 1:
        raise BadRequestError("name one product")
    try:
        product = validate_product(values[0])
    except ReleaseContractError as e:
        raise BadRequestError(str(e)) from e
    # Before one byte of the body: a token for another product costs nothing.
    if caller.role != "admin" and not caller.may_publish(product):
        raise ForbiddenError(f"this token may not publish {product} releases", product=product)
    return product


def _check_length(limit: int) -> None:
    length = request.content_length
    if length is None and request.headers.get("Transfer-Encoding"):
        # Without a length the size is known only once the body is read.
        raise LengthRequired("send the bundle with a Content-Length (chunked uploads are refused)")
    if not length:  # neither a length nor chunks: no body (RFC 9112, 6.3)
        raise BadRequestError("the request body must be a release bundle (.tar)")
    if length > limit:
        raise PayloadTooLargeError(
            f"the bundle has {length} bytes; this server takes at most {limit}"
        )


@contextmanager
def _slot(config: ServerConfig, caller: Caller) -> Iterator[None]:
    """Hold an upload slot of the caller's token and of the machine (threat SRV-DOS)."""
    try:
        with spool.upload_slots(
            config.data_dir, caller.token_id, MAX_UPLOADS_PER_TOKEN, MAX_UPLOADS
        ):
            yield
    except spool.SlotsBusyError as e:
        logger.warning("upload from %s refused: %s", caller.actor, e)
        busy = TooManyRequests if e.scope == "token" else ServiceUnavailable
        raise busy(f"{e}; retry later", retry_after=UPLOAD_RETRY_AFTER) from e


def _publish_body(config: ServerConfig, caller: Caller, declared: str | None) -> dict[str, Any]:
    """Stream the body into a bundle and publish it; every file is gone after."""
    limit = config.max_bundle_bytes
    body = _Body(request.stream, limit)
    # Every exception leaves upload_dir first: the files are gone before the answer.
    try:
        with (
            spool.upload_dir(config.data_dir) as workdir,
            open_bundle_stream(cast(BinaryIO, body), workdir, max_bytes=limit) as bundle,
        ):
            body.drain()
            if declared is not None and bundle.product != declared:
                raise RefusedError(
                    f"the upload declared product {declared}; the bundle is a "
                    f"{bundle.product} release",
                    product=bundle.product,
                )
            online = publishing.online_signers(current_app)
            factory = current_app.extensions["pumpguard.db"]
            return publishing.publish(
                factory,
                config,
                online,
                bundle,
                caller.actor,
                token_id=caller.token_id,
                bundle_sha256=body.sha256(),
            )
    except (BundleError, ReleaseContractError) as e:
        logger.warning("upload from %s refused after %d bytes: %s", caller.actor, body.received, e)
        raise RefusedError(str(e)) from e
    except RequestEntityTooLarge as e:
        raise PayloadTooLargeError(f"the bundle exceeds this server's {limit} bytes") from e
    except OSError as e:
        # Storing or unpacking failed on this machine (a full disk): not the
        # bundle's fault. publishing.publish answers its own OSErrors.
        logger.error("storing the upload from %s failed: %s", caller.actor, e)
        raise publishing.PublishFailedError(
            f"the server cannot store the upload: {e.strerror or 'I/O error'}"
        ) from e


@bp.route("", methods=["POST"])
@require("release-engineer")
def publish_release() -> tuple[Response, int]:
    """Publish a signed bundle: 201 with the release, 422 when it is refused."""
    config: ServerConfig = current_app.config["PUMPGUARD"]
    caller = current_caller()
    unknown = sorted(set(request.args) - {"product"})
    try:
        if unknown:
            raise BadRequestError(f"unknown query parameter(s): {', '.join(unknown)}")
        if request.mimetype != BUNDLE_MEDIA_TYPE:
            raise UnsupportedMediaTypeError(
                f"send the bundle .tar as {BUNDLE_MEDIA_TYPE}, not {request.mimetype or 'nothing'}"
            )
        declared = _declared_product(caller)
        _check_length(config.max_bundle_bytes)
        if request.environ.get(HEAD_ONLY) is True:
            # The head passed every check made before the body: the server
            # may read it. Nothing is done, logged or audited; the slot is
            # taken by the full request, which runs every check again.
            return Response(status=204), 204
        with _slot(config, caller):
            spool.sweep(config.data_dir)  # a worker killed mid-upload left its files
            result = _publish_body(config, caller, declared)
    except ApiError as e:
        # Messages of the bundle reader, the repository and the system may
        # name the server's paths; the client learns none (finding 7).
        e.args = (public_message(str(e), config), *e.args[1:])
        raise
    # This process's pumps learn of the release at their next check-in;
    # other workers' within devices.CANDIDATE_TTL.
    devices.invalidate_candidates(current_app)
    response = jsonify(result)
    response.headers["Location"] = f"/api/v1/releases?product={result['product']}"
    return response, 201


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    # ASCII digits only, as devices._query_int: int() also takes signs, spaces,
    # underscores and other scripts' digits, which the OpenAPI document refuses.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 12):
        raise BadRequestError(f"{name} must be an integer, not {raw!r}")
    value = int(raw)
    if not low <= value <= high:
        raise BadRequestError(f"{name} must be between {low} and {high}")
    return value


@bp.route("", methods=["GET"])
@require("operator", "release-engineer", "reviewer")
def list_releases() -> Response:
    """List the release index, newest first (``product``, ``limit``, ``offset``)."""
    unknown = sorted(set(request.args) - {"product", "limit", "offset"})
    if unknown:
        raise BadRequestError(f"unknown query parameter(s): {', '.join(unknown)}")
    limit = _int_arg("limit", 100, 1, _MAX_LIMIT)
    offset = _int_arg("offset", 0, 0, 2**31 - 1)
    query = select(Release)
    count = select(func.count()).select_from(Release)
    product = request.args.get("product")
    if product is not None:
        try:
            validate_product(product)
        except ReleaseContractError as e:
            raise BadRequestError(str(e)) from e
        query = query.where(Release.product == product)
        count = count.where(Release.product == product)
    session = get_session()
    rows = session.execute(query.order_by(Release.id.desc()).limit(limit).offset(offset))
    body: dict[str, Any] = {
        "releases": [publishing.release_json(r) for r in rows.scalars()],
        "total": session.execute(count).scalar_one(),
        "limit": limit,
        "offset": offset,
    }
    return jsonify(body)


def init_app(app: Flask) -> None:
    """Register the blueprint; remove what uploads killed before this start left behind."""
    app.register_blueprint(bp)
    spool.sweep(app.config["PUMPGUARD"].data_dir)
