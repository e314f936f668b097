"""The application factory."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool
import sqlalchemy.exc
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError

from update_server import db, device_auth, devices, openapi, refresher, releases, tuf
from update_server.config import ServerConfig, load_config
from update_server.errors import ApiError

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

#: Seconds a client is asked to wait (``Retry-After``) when the database is unavailable.
DATABASE_RETRY_AFTER = 5


def create_app(config: ServerConfig | Mapping[str, Any] | None = None) -> Flask:
    """Create the server app.

    Args:
        config: A :class:`ServerConfig`, or a mapping with ``data_dir`` and any
            settings to override (tests), or None to load ``PUMPGUARD_DATA``.
    """
    if config is None or isinstance(config, Mapping):
        overrides = dict(config or {})
        import os

        data_dir = Path(overrides.pop("data_dir", None) or os.environ["PUMPGUARD_DATA"])
        base = load_config(data_dir)
        from dataclasses import replace

        config = replace(base, **overrides)
    app = Flask(__name__)
    app.config["PUMPGUARD"] = config
    app.config["MAX_CONTENT_LENGTH"] = config.max_bundle_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]

    db.init_app(app)
    device_auth.init_app(app)
    _register_error_handlers(app)
    for module in _FEATURES:
        module.init_app(app)
    return app


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(e: ApiError) -> tuple[Response, int]:
        return jsonify(e.to_json()), e.status

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> tuple[Response, int]:
        # Every error an API client sees is JSON that says what is wrong.
        code = e.code or 500
        body = {
            "error": {
                "code": (e.name or "error").lower().replace(" ", "_"),
                "message": e.description,
            }
        }
        response = jsonify(body)
        # Keep what the exception says beyond its body, e.g. the Allow header a
        # 405 must carry (RFC 9110, 15.5.6).
        for name, value in e.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, code

    @app.errorhandler(psycopg.OperationalError)
    @app.errorhandler(sqlalchemy.exc.OperationalError)
    @app.errorhandler(sqlalchemy.exc.TimeoutError)
    def _database_unavailable(e: Exception) -> tuple[Response, int]:
        if isinstance(e, sqlalchemy.exc.TimeoutError | psycopg_pool.PoolTimeout):
            # Every pooled connection is in use (a burst, or a flood of
            # requests that need the database): the pools are bounded on
            # purpose (threat SRV-DOS), so this request is asked to retry
            # instead of waiting longer or opening another connection.
            logger.warning("no database connection free within the pool timeout")
            return _retry_later()
        if not db.is_unavailable(e):
            # A schema or query error that the driver files under
            # "operational" (SQLite's "no such table"): a server bug, so a
            # 500 with its traceback logged, never a 503 inviting retries.
            logger.error("database error: %s", e, exc_info=e)
            return _http_error(InternalServerError(original_exception=e))
        # The database is down, restarting or locked: a temporary condition
        # the client should retry (pumps back off), not a server bug. The
        # message names the server's side only; the details go to the log.
        logger.error("database unavailable: %s", e, exc_info=e)
        return _retry_later()

    def _retry_later() -> tuple[Response, int]:
        response = jsonify(
            {
                "error": {
                    "code": "database_unavailable",
                    "message": "the server's database is unavailable; retry later",
                }
            }
        )
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER)
        return response, 503


_FEATURES: list[Any] = [devices, tuf, releases, refresher, openapi]
