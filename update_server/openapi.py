"""The API contract: an OpenAPI 3.1 document at ``/api/v1/openapi.json``.

Written by hand next to the code it describes; the request schemas come from
:mod:`update_server._openapi_inputs`, built from the server's own validation
constants. Tests check that every route of the app is documented and every
documented route exists (test_openapi.py), and that the document accepts a
body or a query value exactly when the server does (test_openapi_contract.py,
test_openapi_generated.py, test_openapi_queries.py; threat SRV-INPUT).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, jsonify

from pumpguard.jsonutil import MAX_DEPTH
from update_server._openapi_inputs import (
    BODY_LIMITS,
    COUNTER,
    DEVICE_ID,
    EVENT_KIND,
    HARDWARE_ID,
    HEX64,
    INPUT_SCHEMAS,
    PRODUCT,
    SEMVER,
)
from update_server.devices import MAX_OFFSET, MAX_PAGE

__all__ = ["SPEC", "bp", "init_app"]

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")

# For what the server answers; request schemas are in _openapi_inputs. A
# published release's version has no length limit (pumpguard.release).
_ISO = {"type": "string", "format": "date-time"}
_HEX64 = HEX64
_SEMVER = {"type": "string", "pattern": SEMVER["pattern"], "description": "Semantic version."}
_PRODUCT = PRODUCT
_HARDWARE = HARDWARE_ID
_COUNTER = {"type": "integer", "minimum": 0, "maximum": COUNTER["maximum"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(name: str) -> dict[str, Any]:
    """A required JSON request body of schema ``name``, with its size limit."""
    return {
        "required": True,
        "description": f"At most {BODY_LIMITS[name]} bytes (413 above); every body this schema "
        "accepts fits when encoded as compact JSON.",
        "content": {"application/json": {"schema": _ref(name)}},
    }


def _errors(*codes: int) -> dict[str, Any]:
    # Every API endpoint uses the database, so each can answer 503.
    return {str(c): {"$ref": f"#/components/responses/E{c}"} for c in (*codes, 503)}


def _page(key: str, items: dict[str, Any]) -> dict[str, Any]:
    """A paged list response: ``{key: [...], total, limit, offset}``."""
    return {
        "type": "object",
        "properties": {
            key: {"type": "array", "items": items},
            "total": {"type": "integer"},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
        },
    }


def _paging(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        *extra,
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
        },
        {
            "name": "offset",
            "in": "query",
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
        },
    ]


_DEVICE_PATH = {
    "name": "device_id",
    "in": "path",
    "required": True,
    "schema": DEVICE_ID,
}
#: What GET on a static /tuf file answers (ETag, If-None-Match, single Range).
_STATIC_FILE_RESPONSES: dict[str, Any] = {
    "200": {"description": "The file."},
    "206": {"description": "A byte range of the file."},
    "304": {"description": "Not modified."},
    "404": {"$ref": "#/components/responses/E404"},
    "416": {"description": "Range not satisfiable."},
}
_ONLY_LISTED = "A query parameter other than those listed is refused (400)."
_TOKEN: list[dict[str, list[str]]] = [{"token": []}]
_DEVICE: list[dict[str, list[str]]] = [{"deviceSignature": []}]

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "pumpguard update server",
        "version": "1",
        "description": (
            "TUF distribution, verified publishing, device enrollment and signed check-ins. "
            'Every error is JSON: {"error": {"code", "message", ...}}. Pumps verify '
            "everything they install through TUF themselves; the API only tells them what to "
            "fetch. Request bodies are strict JSON, beyond what JSON Schema can state: UTF-8, "
            "no repeated key, no NaN or Infinity, no number outside an IEEE double's range, "
            f"arrays and objects nested at most {MAX_DEPTH} deep; an integer field takes a JSON "
            "integer literal only (1.0 is refused)."
        ),
    },
    "servers": [{"url": "/"}],
    "components": {
        "securitySchemes": {
            "token": {
                "type": "http",
                "scheme": "bearer",
                "description": "API token (pumpguard server token create); role admin, operator, "
                "release-engineer (scoped to products) or reviewer.",
            },
            "deviceSignature": {
                "type": "apiKey",
                "in": "header",
                "name": "X-Pumpguard-Signature",
                "description": "Ed25519 signature by the enrolled device key over the canonical "
                "request (pumpguard.device_auth): device id, method, path, sha256(body), "
                "X-Pumpguard-Timestamp and X-Pumpguard-Nonce. Stale timestamps and replayed "
                "nonces are refused.",
            },
        },
        "responses": {
            f"E{code}": _json(_ref("Error"), desc)
            for code, desc in {
                400: "Malformed input",
                401: "Unauthorized",
                403: "Forbidden",
                404: "Not found",
                409: "Conflict",
                413: "Payload too large",
                411: "Length required (send Content-Length; chunked uploads are refused)",
                415: "Unsupported media type",
                422: "Refused",
                429: "Too many uploads in progress with this token; retry after Retry-After "
                "seconds",
                500: "Server error",
                503: "The server's database is unavailable, or every upload slot is taken; "
                "retry after Retry-After seconds",
            }.items()
        },
        "schemas": {
            **INPUT_SCHEMAS,
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        "additionalProperties": True,
                    }
                },
            },
            "Device": {
                "type": "object",
                "properties": {
                    "device_id": DEVICE_ID,
                    "product": _PRODUCT,
                    "hardware_id": _HARDWARE,
                    "public_key": _HEX64,
                    "enrolled_at": _ISO,
                    "revoked_at": {"oneOf": [_ISO, {"type": "null"}]},
                    "last_seen": {"oneOf": [_ISO, {"type": "null"}]},
                    "version": {"type": ["string", "null"]},
                    "release_counter": {"type": ["integer", "null"]},
                    "assigned_version": {"type": ["string", "null"]},
                    "status": {"type": "object"},
                },
            },
            "DeviceList": _page("devices", _ref("Device")),
            "Assignment": {
                "type": "object",
                "required": ["product", "version", "release_counter", "firmware", "sbom"],
                "properties": {
                    "product": _PRODUCT,
                    "version": _SEMVER,
                    "release_counter": _COUNTER,
                    "firmware": {
                        "type": "object",
                        "properties": {
                            "path": {"type": "string"},
                            "length": {"type": "integer"},
                            "sha256": _HEX64,
                        },
                    },
                    "sbom": {"type": "object", "properties": {"path": {"type": "string"}}},
                },
            },
            "CheckinResponse": {
                "type": "object",
                "required": ["assigned", "poll_interval", "server_time"],
                "properties": {
                    "assigned": {"oneOf": [_ref("Assignment"), {"type": "null"}]},
                    "poll_interval": {
                        "type": "integer",
                        "description": "Seconds until the next check-in.",
                    },
                    "server_time": _ISO,
                },
            },
            "EventList": _page(
                "events",
                {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "kind": EVENT_KIND,
                        "at": _ISO,
                        "received_at": _ISO,
                        "detail": {"type": "object"},
                    },
                },
            ),
            "Release": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "product": _PRODUCT,
                    "version": _SEMVER,
                    "release_counter": _COUNTER,
                    "hardware_ids": {"type": "array", "items": _HARDWARE},
                    "firmware": {
                        "type": "object",
                        "properties": {
                            "path": {"type": "string"},
                            "sha256": _HEX64,
                            "length": {"type": "integer"},
                        },
                    },
                    "sbom_path": {"type": "string"},
                    "notes": {"type": "string"},
                    "signed_by": {"type": "array", "items": _HEX64},
                    "published_at": _ISO,
                    "published_by": {"type": "string"},
                },
            },
            "ReleaseList": _page("releases", _ref("Release")),
        },
    },
    "paths": {
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document.",
                "operationId": "getOpenApi",
                "responses": {"200": {"description": "OpenAPI 3.1 document."}},
            }
        },
        "/api/v1/releases": {
            "post": {
                "summary": "Publish a two-person-signed release bundle.",
                "description": "The server runs every check of `pumpguard release publish` "
                "(threshold, keys, paths, hashes, version and release_counter increasing) "
                "before anything is visible; timestamp.json is written last. The token's "
                "role and scope over `product`, the Content-Length (required, at most the "
                "server's max_bundle_bytes) and a free upload slot are judged from the request "
                "head, before any of the body is read; the bundle must be of the declared "
                "product (422). " + _ONLY_LISTED,
                "operationId": "publishRelease",
                "security": _TOKEN,
                "parameters": [
                    {
                        "name": "product",
                        "in": "query",
                        "schema": PRODUCT,
                        "description": "The bundle's product. Required for a token of several "
                        "products; a token of one product may leave it out (that product is "
                        "meant), and so may an admin.",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-tar": {
                            "schema": {"type": "string", "contentMediaType": "application/x-tar"}
                        }
                    },
                },
                "responses": {"201": _json(_ref("Release"), "Published.")}
                | _errors(400, 401, 403, 411, 413, 415, 422, 429, 500),
            },
            "get": {
                "summary": "List published releases, newest first.",
                "operationId": "listReleases",
                "description": _ONLY_LISTED,
                "security": _TOKEN,
                "parameters": _paging({"name": "product", "in": "query", "schema": PRODUCT}),
                "responses": {"200": _json(_ref("ReleaseList"), "Releases.")}
                | _errors(400, 401, 403),
            },
        },
        "/api/v1/devices": {
            "post": {
                "summary": "Enroll a pump (operator).",
                "operationId": "enrollDevice",
                "security": _TOKEN,
                "requestBody": _body("Enrollment"),
                "responses": {"201": _json(_ref("Device"), "Enrolled.")}
                | _errors(400, 401, 403, 409, 413),
            },
            "get": {
                "summary": "List pumps with their last reported state (operator, reviewer).",
                "operationId": "listDevices",
                "description": _ONLY_LISTED,
                "security": _TOKEN,
                "parameters": _paging({"name": "product", "in": "query", "schema": PRODUCT}),
                "responses": {"200": _json(_ref("DeviceList"), "Pumps.")} | _errors(400, 401, 403),
            },
        },
        "/api/v1/devices/{device_id}": {
            "parameters": [_DEVICE_PATH],
            "get": {
                "summary": "One pump (operator, reviewer).",
                "operationId": "getDevice",
                "security": _TOKEN,
                "responses": {"200": _json(_ref("Device"), "The pump.")} | _errors(401, 403, 404),
            },
            "delete": {
                "summary": "Revoke a pump (operator); its requests are refused from now on.",
                "operationId": "revokeDevice",
                "security": _TOKEN,
                "responses": {"200": _json(_ref("Device"), "Revoked.")}
                | _errors(401, 403, 404, 409),
            },
        },
        "/api/v1/devices/{device_id}/checkin": {
            "parameters": [_DEVICE_PATH],
            "post": {
                "summary": "Report state; learn the assigned release and the poll interval.",
                "operationId": "checkin",
                "security": _DEVICE,
                "requestBody": _body("Checkin"),
                "responses": {"200": _json(_ref("CheckinResponse"), "Assignment.")}
                | _errors(400, 401, 409, 413),
            },
        },
        "/api/v1/devices/{device_id}/events": {
            "parameters": [_DEVICE_PATH],
            "post": {
                "summary": "Report update events.",
                "operationId": "postEvents",
                "security": _DEVICE,
                "requestBody": _body("Events"),
                "responses": {
                    "201": _json(
                        {"type": "object", "properties": {"stored": {"type": "integer"}}}, "Stored."
                    )
                }
                | _errors(400, 401, 409, 413),
            },
            "get": {
                "summary": "A pump's events, newest first (operator, reviewer).",
                "operationId": "listEvents",
                "description": _ONLY_LISTED,
                "security": _TOKEN,
                "parameters": _paging({"name": "kind", "in": "query", "schema": EVENT_KIND}),
                "responses": {"200": _json(_ref("EventList"), "Events.")}
                | _errors(400, 401, 403, 404),
            },
        },
        "/tuf/metadata/{name}": {
            "get": {
                "summary": "TUF metadata (static file; ETag, If-None-Match, Range).",
                "description": "timestamp.json is never cached; every versioned file is immutable.",
                "operationId": "getMetadata",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": _STATIC_FILE_RESPONSES,
            }
        },
        "/tuf/targets/{path}": {
            "get": {
                "summary": "A release file (static; immutable; Range for resumable downloads).",
                "operationId": "getTarget",
                "parameters": [
                    {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": _STATIC_FILE_RESPONSES,
            }
        },
    },
}


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """Serve the OpenAPI document."""
    return jsonify(SPEC)


def init_app(app: Flask) -> None:
    """Register the blueprint."""
    app.register_blueprint(bp)
