"""Query parameters: the OpenAPI document accepts a value exactly when the server does.

Issue 19 finding 8 (threat SRV-INPUT): the document let ``kind`` be any
string and a product be a TUF role name; the server refuses both. Each value
goes to the real server (SQLite and PostgreSQL, an admin token) and through
the parameter's schema in the document. A query value is text: it is read as
an integer where it is written as one (``-?(0|[1-9][0-9]*)``), else as a
string, as an OpenAPI client writes integers. A parameter the document does
not list is refused (its description says so).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator

from contract_support import server_verdict
from repo_support import PRODUCT
from server_support import Pump
from update_server.devices import EVENT_KINDS

_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
EVENTS_OF = "/api/v1/devices/{device_id}/events"

PAGING = [
    ("limit", "1", True),
    ("limit", "1000", True),
    ("limit", "1001", False),
    ("limit", "0", False),
    ("limit", "-1", False),
    ("limit", "1.5", False),
    ("limit", "ten", False),
    ("limit", "", False),
    ("offset", "0", True),
    ("offset", str(2**31 - 1), True),
    ("offset", str(2**31), False),
    ("offset", "-1", False),
    ("unknown", "1", False),
]
# Integers as no OpenAPI client writes them (int() reads each one).
ODD_INTEGERS = ["+5", " 5", "5 ", "1_0", "\u0665"]
PRODUCTS = [
    ("product", PRODUCT, True),
    ("product", "other-pump", True),
    ("product", "root", False),
    ("product", "Sigma", False),
    ("product", "a" * 65, False),
    ("product", PRODUCT + "\n", False),
    ("product", "", False),
]
KINDS = [
    *(("kind", k, True) for k in EVENT_KINDS),
    ("kind", "party", False),
    ("kind", "CHECK", False),
    ("kind", "", False),
]
ODD = [("limit", v, False) for v in ODD_INTEGERS] + [("offset", v, False) for v in ODD_INTEGERS]
TABLES: dict[str, list[tuple[str, str, bool]]] = {
    "/api/v1/devices": PRODUCTS + PAGING + ODD,
    "/api/v1/releases": PRODUCTS + PAGING,
    EVENTS_OF: KINDS + PAGING + ODD,
}


def document_accepts(document: dict[str, Any], path: str, name: str, text: str) -> bool:
    item = document["paths"][path]
    params = [*item.get("parameters", []), *item["get"].get("parameters", [])]
    schema = next((p["schema"] for p in params if p["in"] == "query" and p["name"] == name), None)
    if schema is None:
        return False
    value: Any = int(text) if schema.get("type") == "integer" and _INTEGER.fullmatch(text) else text
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return bool(validator.is_valid(value))


def _server_accepts(client: FlaskClient, url: str, name: str, text: str, admin: Any) -> bool:
    r = client.get(url, query_string={name: text}, headers=admin)
    return server_verdict(r.status_code, r.get_data(as_text=True)).accepted


def test_the_document_accepts_a_query_value_exactly_when_the_server_does(
    client: FlaskClient, admin_headers: dict[str, str], pump: Pump
) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    problems = []
    for path, cases in TABLES.items():
        url = path.format(device_id=pump.device_id)
        for name, text, accepted in cases:
            server = _server_accepts(client, url, name, text, admin_headers)
            ours = document_accepts(document, path, name, text)
            if server != accepted or ours != accepted:
                problems.append(
                    f"{path} {name}={text!r}: server {server}, document {ours}, table {accepted}"
                )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_release_list_refuses_integers_no_client_writes(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    accepted = [
        f"{name}={text!r}"
        for name in ("limit", "offset")
        for text in ODD_INTEGERS
        if _server_accepts(client, "/api/v1/releases", name, text, admin_headers)
    ]
    assert not accepted, accepted
