"""``/api/v1/releases``: publish a signed release bundle; list published releases.

``POST`` takes the bundle ``.tar`` as the request body (``application/x-tar``),
from a release-engineer token scoped to the bundle's product (or an admin).
The server trusts neither the uploader nor the bundle: the bundle must pass
every check of the local publish (threshold of the product's delegated keys,
paths, hashes, versions, release counter, SBOM binding) before any byte of it
becomes visible, so a stolen token can publish nothing the release engineers
did not sign (threat SRV-TOKEN-THEFT; TUF spec 5.6/5.7).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from sqlalchemy import func, select
from werkzeug.exceptions import RequestEntityTooLarge

from pumpguard.errors import ReleaseContractError
from pumpguard.release import validate_product
from signer import BundleError
from signer.bundle import open_bundle
from update_server import devices, publishing
from update_server.auth import current_caller, require
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

__all__ = ["BUNDLE_MEDIA_TYPE", "bp", "init_app"]

bp = Blueprint("releases", __name__, url_prefix="/api/v1/releases")

BUNDLE_MEDIA_TYPE = "application/x-tar"
_CHUNK = 1 << 20
_MAX_LIMIT = 1000


class UnsupportedMediaTypeError(ApiError):
    """The request body is not of a media type the endpoint takes."""

    status = 415
    code = "unsupported_media_type"


def _receive(config: ServerConfig) -> Path:
    """Stream the request body into a private temporary file in the data folder."""
    limit = config.max_bundle_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLargeError(
            f"the bundle has {request.content_length} bytes; this server takes at most {limit}"
        )
    uploads = config.data_dir / "uploads"
    uploads.mkdir(mode=0o700, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".tar", dir=uploads)
    path = Path(name)
    received = 0
    try:
        with os.fdopen(fd, "wb") as f:
            stream = request.stream
            while chunk := stream.read(_CHUNK):
                received += len(chunk)
                if received > limit:
                    raise PayloadTooLargeError(f"the bundle exceeds this server's {limit} bytes")
                f.write(chunk)
    except RequestEntityTooLarge as e:
        # A chunked body beyond MAX_CONTENT_LENGTH (threat SRV-DOS).
        path.unlink(missing_ok=True)
        raise PayloadTooLargeError(f"the bundle exceeds this server's {limit} bytes") from e
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if received == 0:
        path.unlink(missing_ok=True)
        raise BadRequestError("the request body must be a release bundle (.tar)")
    return path


@bp.route("", methods=["POST"])
@require("release-engineer")
def publish_release() -> tuple[Response, int]:
    """Publish a signed bundle: 201 with the release, 422 when it is refused."""
    if request.mimetype != BUNDLE_MEDIA_TYPE:
        raise UnsupportedMediaTypeError(
            f"send the bundle .tar as {BUNDLE_MEDIA_TYPE}, not {request.mimetype or 'nothing'}"
        )
    config: ServerConfig = current_app.config["PUMPGUARD"]
    caller = current_caller()
    upload = _receive(config)
    try:
        try:
            with open_bundle(upload) as bundle:
                # Scope first: a token for another product learns nothing more.
                if caller.role != "admin" and not caller.may_publish(bundle.product):
                    raise ForbiddenError(
                        f"this token may not publish {bundle.product} releases",
                        product=bundle.product,
                    )
                online = publishing.online_signers(current_app)
                factory = current_app.extensions["pumpguard.db"]
                result = publishing.publish(factory, config, online, bundle, caller.actor)
                # This process's pumps learn of the release at their next
                # check-in; other workers' within devices.CANDIDATE_TTL.
                devices.invalidate_candidates(current_app)
        except (BundleError, ReleaseContractError) as e:
            raise RefusedError(str(e)) from e
    finally:
        upload.unlink(missing_ok=True)
    response = jsonify(result)
    response.headers["Location"] = f"/api/v1/releases?product={result['product']}"
    return response, 201


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequestError(f"{name} must be an integer, not {raw!r}") from None
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
    """Register the blueprint."""
    app.register_blueprint(bp)
