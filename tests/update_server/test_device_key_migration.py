"""Migration 0002: one public key per device, also for databases that exist.

Every test runs on SQLite and on PostgreSQL (the ``database_url`` fixture: a
fresh, empty database), starting from the schema of revision 0001 with rows
an older server could have written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from repo_support import PRODUCT
from update_server import db
from update_server.db import engine_for, migrate
from update_server.errors import ServerError
from update_server.models import Base

DEVICES = Base.metadata.tables["devices"]


def upgrade_to(url: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(db._MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, revision)


def key() -> str:
    return Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()


def add_devices(engine: Engine, keys: dict[str, str]) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(DEVICES),
            [
                {"device_id": d, "hardware_id": "rev-b", "product": PRODUCT, "public_key": k}
                for d, k in keys.items()
            ],
        )


def stored_keys(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(select(DEVICES.c.device_id, DEVICES.c.public_key)).all()
    return {str(device_id): str(public_key) for device_id, public_key in rows}


def revision(engine: Engine) -> str:
    with engine.connect() as conn:
        value: str = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    return value


@pytest.fixture
def engine_at_0001(database_url: str) -> Iterator[Engine]:
    upgrade_to(database_url, "0001")
    engine = engine_for(database_url)
    yield engine
    engine.dispose()


K1, K2 = key(), key()

#: Keys that only SQLite can hold: PostgreSQL's varchar(64) refused 65 characters.
SQLITE_ONLY = "SQLite only"


def on_both_databases(cases: list[tuple[Any, ...]]) -> list[Any]:
    """``(id, *values, where)`` cases as params of ``database_url`` and the values."""
    return [
        pytest.param(database, *values, id=f"{case_id}-{database}")
        for case_id, *values, where in cases
        for database in ("sqlite", "postgresql")
        if database == "sqlite" or where != SQLITE_ONLY
    ]


# Rows of several devices sharing one key, as revision 0001 allowed: the same
# string (concurrent enrollments) or another spelling of the same key.
SHARED: list[tuple[str, dict[str, str], str]] = [
    ("same-string", {"pump-a": K1, "pump-b": K1, "pump-c": K2}, ""),
    ("three-devices", {"pump-a": K1, "pump-b": K1, "pump-c": K1}, ""),
    ("upper-case-spelling", {"pump-a": K1, "pump-b": K1.upper(), "pump-c": K2}, ""),
    ("trailing-newline-spelling", {"pump-a": K1, "pump-b": K1 + "\n", "pump-c": K2}, SQLITE_ONLY),
]


@pytest.mark.parametrize(
    ("database_url", "rows"), on_both_databases(SHARED), indirect=["database_url"]
)
def test_upgrade_refuses_devices_sharing_a_key_and_names_them(
    database_url: str, engine_at_0001: Engine, rows: dict[str, str]
) -> None:
    add_devices(engine_at_0001, rows)
    with pytest.raises(ServerError) as refused:
        migrate(database_url)
    message = str(refused.value)
    assert "share a public key" in message
    sharing = sorted(d for d in rows if rows[d] != K2)
    assert ", ".join(repr(d) for d in sharing) in message
    assert all(repr(d) not in message for d in rows if d not in sharing)
    # Nothing changed: still revision 0001, the rows as they were, no index.
    assert revision(engine_at_0001) == "0001"
    assert stored_keys(engine_at_0001) == rows
    indexes = {ix["name"] for ix in inspect(engine_at_0001).get_indexes("devices")}
    assert "ix_devices_public_key" not in indexes


SPELLINGS: list[tuple[str, Callable[[str], str], str]] = [
    ("upper-case", str.upper, ""),
    ("trailing-newline", lambda k: k + "\n", SQLITE_ONLY),
]


@pytest.mark.parametrize(
    ("database_url", "spelling"), on_both_databases(SPELLINGS), indirect=["database_url"]
)
def test_upgrade_stores_keys_canonically_so_a_second_spelling_is_refused(
    database_url: str, engine_at_0001: Engine, spelling: Callable[[str], str]
) -> None:
    add_devices(engine_at_0001, {"pump-a": spelling(K1), "pump-b": K2})
    migrate(database_url)
    assert revision(engine_at_0001) == "0002"
    assert stored_keys(engine_at_0001) == {"pump-a": K1, "pump-b": K2}
    # The unique index now holds the one form every enrollment stores.
    with pytest.raises(IntegrityError):
        add_devices(engine_at_0001, {"pump-c": K1})
