"""The API contract: an OpenAPI 3.1 document at ``/api/v1/openapi.json``.

Written by hand next to the code it describes; a test checks that every route
of the app is documented and every documented route exists.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, jsonify

from update_server.devices import (
    AGENT_STATES,
    EVENT_KINDS,
    SLOT_STATES,
    THERAPY_STATES,
    UPDATE_RESULTS,
)

__all__ = ["SPEC", "bp", "init_app"]

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")

_ISO = {"type": "string", "format": "date-time"}
_HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_SEMVER = {"type": "string", "maxLength": 64, "description": "Semantic version."}
_PRODUCT = {"type": "string", "pattern": "^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"}
_HARDWARE = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
_COUNTER = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


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
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
        },
        {
            "name": "offset",
            "in": "query",
            "schema": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
        },
    ]


_DEVICE_PATH = {
    "name": "device_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
}
#: What GET on a static /tuf file answers (ETag, If-None-Match, single Range).
_STATIC_FILE_RESPONSES: dict[str, Any] = {
    "200": {"description": "The file."},
    "206": {"description": "A byte range of the file."},
    "304": {"description": "Not modified."},
    "404": {"$ref": "#/components/responses/E404"},
    "416": {"description": "Range not satisfiable."},
}
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
            "everything they install through TUF themselves; the API only tells them what to fetch."
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
                415: "Unsupported media type",
                422: "Refused",
                503: "The server's database is unavailable; retry after Retry-After seconds",
            }.items()
        },
        "schemas": {
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
            "Enrollment": {
                "type": "object",
                "additionalProperties": False,
                "required": ["device_id", "hardware_id", "product", "public_key"],
                "properties": {
                    "device_id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
                    "hardware_id": _HARDWARE,
                    "product": _PRODUCT,
                    "public_key": {**_HEX64, "description": "Raw Ed25519 public key, hex."},
                },
            },
            "Device": {
                "type": "object",
                "properties": {
                    "device_id": {"type": "string"},
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
            "Checkin": {
                "type": "object",
                "additionalProperties": False,
                "required": [
                    "product",
                    "hardware_id",
                    "version",
                    "release_counter",
                    "slots",
                    "therapy",
                ],
                "properties": {
                    "product": _PRODUCT,
                    "hardware_id": _HARDWARE,
                    "version": _SEMVER,
                    "release_counter": _COUNTER,
                    "slots": {
                        "type": "object",
                        "maxProperties": 4,
                        "propertyNames": {"pattern": "^[a-z0-9_-]{1,16}$"},
                        "additionalProperties": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["state"],
                            "properties": {
                                "state": {"enum": list(SLOT_STATES)},
                                "version": _SEMVER,
                                "release_counter": _COUNTER,
                                "sha256": _HEX64,
                            },
                        },
                    },
                    "last_update": {
                        "oneOf": [
                            {"type": "null"},
                            {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["version", "release_counter", "result", "at"],
                                "properties": {
                                    "version": _SEMVER,
                                    "release_counter": _COUNTER,
                                    "result": {"enum": list(UPDATE_RESULTS)},
                                    "at": _ISO,
                                    "error": {"type": "string", "maxLength": 512},
                                },
                            },
                        ]
                    },
                    "therapy": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["state"],
                        "properties": {
                            "state": {"enum": list(THERAPY_STATES)},
                            "since": _ISO,
                        },
                    },
                    "agent_state": {"enum": list(AGENT_STATES)},
                },
            },
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
            "Events": {
                "type": "object",
                "additionalProperties": False,
                "required": ["events"],
                "properties": {
                    "events": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 100,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["kind", "at"],
                            "properties": {
                                "kind": {"enum": list(EVENT_KINDS)},
                                "at": _ISO,
                                "detail": {"type": "object"},
                            },
                        },
                    }
                },
            },
            "EventList": _page(
                "events",
                {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "kind": {"type": "string"},
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
                "before anything is visible; timestamp.json is written last.",
                "operationId": "publishRelease",
                "security": _TOKEN,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-tar": {
                            "schema": {"type": "string", "contentMediaType": "application/x-tar"}
                        }
                    },
                },
                "responses": {"201": _json(_ref("Release"), "Published.")}
                | _errors(400, 401, 403, 413, 415, 422),
            },
            "get": {
                "summary": "List published releases, newest first.",
                "operationId": "listReleases",
                "security": _TOKEN,
                "parameters": _paging({"name": "product", "in": "query", "schema": _PRODUCT}),
                "responses": {"200": _json(_ref("ReleaseList"), "Releases.")}
                | _errors(400, 401, 403),
            },
        },
        "/api/v1/devices": {
            "post": {
                "summary": "Enroll a pump (operator).",
                "operationId": "enrollDevice",
                "security": _TOKEN,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("Enrollment")}},
                },
                "responses": {"201": _json(_ref("Device"), "Enrolled.")}
                | _errors(400, 401, 403, 409, 413),
            },
            "get": {
                "summary": "List pumps with their last reported state (operator, reviewer).",
                "operationId": "listDevices",
                "security": _TOKEN,
                "parameters": _paging({"name": "product", "in": "query", "schema": _PRODUCT}),
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
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("Checkin")}},
                },
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
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("Events")}},
                },
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
                "security": _TOKEN,
                "parameters": _paging(
                    {"name": "kind", "in": "query", "schema": {"type": "string"}}
                ),
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
