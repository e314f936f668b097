"""The OpenAPI 3.1 document describes exactly the routes the app serves."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from server_support import ServerEnv
from update_server import create_app
from update_server.db import dispose


def _app_routes(app: Flask) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/api/", "/tuf/")):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in {"HEAD", "OPTIONS"}:
                routes.add((path, method.lower()))
    return routes


def test_openapi_document_is_valid_and_complete(app: Flask, client: FlaskClient) -> None:
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    spec = r.get_json()
    validate(spec)
    documented = {
        (path, method)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "delete", "patch"}
    }
    # /tuf/targets/<path:target> is documented as {path}.
    served = {(p.replace("{target}", "{path}"), m) for p, m in _app_routes(app)}
    assert served == documented


def test_wrong_method_answers_json_405_with_allow_header(client: FlaskClient) -> None:
    r = client.open("/api/v1/devices", method="TRACE")
    assert r.status_code == 405
    assert r.get_json()["error"]["code"] == "method_not_allowed"
    assert {"GET", "POST"} <= {m.strip() for m in r.headers["Allow"].split(",")}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_unreachable_database_answers_json_503_with_retry_after(server_env: ServerEnv) -> None:
    # Nothing listens on port 1: every statement fails to connect, as while
    # the database restarts. API clients get a JSON 503 to retry, not a 500.
    app = create_app(server_env.config(database_url="postgresql+psycopg://pg@127.0.0.1:1/none"))
    try:
        client = app.test_client()
        token = {"Authorization": f"Bearer {server_env.admin_token}"}
        for r in (
            client.get("/api/v1/devices", headers=token),
            client.get("/api/v1/releases", headers=token),
        ):
            assert r.status_code == 503, r.get_data(as_text=True)
            assert r.json is not None and r.json["error"]["code"] == "database_unavailable"
            assert r.headers["Retry-After"] == "5"
            assert "127.0.0.1" not in r.get_data(as_text=True)
    finally:
        dispose(app)


def _patterns(value: object) -> list[str]:
    if isinstance(value, dict):
        found = [v for k, v in value.items() if k == "pattern" and isinstance(v, str)]
        return found + [p for v in value.values() for p in _patterns(v)]
    if isinstance(value, list):
        return [p for v in value for p in _patterns(v)]
    return []


# Python-only regular expression syntax: JSON Schema patterns are ECMA-262.
_PYTHON_ONLY = re.compile(r"\\[AZz]|\(\?P|\(\?#|\(\?[aiLmsux]|\(\?>|[*+?}]\+")


def test_every_pattern_is_exact_in_both_regex_dialects(client: FlaskClient) -> None:
    # jsonschema runs patterns with Python's re.search, where "$" also matches
    # before a final newline; "(?![\s\S])" ends the text in both dialects, so
    # "pump-1\n" is refused as the server's fullmatch refuses it (SRV-INPUT).
    patterns = _patterns(client.get("/api/v1/openapi.json").get_json())
    assert len(patterns) >= 8
    for pattern in patterns:
        assert not _PYTHON_ONLY.search(pattern), pattern
        assert pattern.startswith("^") and pattern.endswith(r"(?![\s\S])"), pattern
        re.compile(pattern)
