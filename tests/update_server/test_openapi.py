"""The OpenAPI 3.1 document describes exactly the routes the app serves."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate


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
