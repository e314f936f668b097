"""Migrations 0002 and 0003: device keys, also for databases that exist.

0002: one public key per device. 0003: no device enrolled with a key that
enrollment refuses today (small order, mixed order, non-canonical, off the
curve; threat SRV-DEVICE-SPOOF). Every test runs on SQLite and on PostgreSQL
(the ``database_url`` fixture: a fresh, empty database), starting from the
schema of an older revision with rows an older server could have written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.bindings import crypto_core_ed25519_add
from sqlalchemy import Engine, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from repo_support import PRODUCT
from update_server import db
from update_server.db import engine_for, migrate
from update_server.errors import ServerError
from update_server.models import Base, utcnow

DEVICES = Base.metadata.tables["devices"]


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(db._MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_to(url: str, revision: str) -> None:
    command.upgrade(alembic_config(url), revision)


#: The newest revision (``migrate`` goes there; later revisions may follow 0003).
HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


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
    assert revision(engine_at_0001) == HEAD
    assert stored_keys(engine_at_0001) == {"pump-a": K1, "pump-b": K2}
    # The unique index now holds the one form every enrollment stores.
    with pytest.raises(IntegrityError):
        add_devices(engine_at_0001, {"pump-c": K1})


# ----------------------------------------------------------------- 0003


@pytest.fixture
def engine_at_0002(database_url: str) -> Iterator[Engine]:
    upgrade_to(database_url, "0002")
    engine = engine_for(database_url)
    yield engine
    engine.dispose()


ZERO_KEY = "00" * 32
IDENTITY_KEY = "01" + "00" * 31
ORDER_8_KEY = "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"
#: A real key plus the order-2 point: on the curve, outside the prime-order subgroup.
MIXED_KEY = crypto_core_ed25519_add(bytes.fromhex(key()), bytes.fromhex("ec" + "ff" * 30 + "7f"))
NON_CANONICAL_KEY = "ed" + "ff" * 30 + "7f"  # y = p

# Rows a server before 0003 could have stored: (id, rows, devices named, why).
UNUSABLE: list[tuple[str, dict[str, str], dict[str, str], str]] = [
    ("zero-key", {"pump-a": K1, "pump-z": ZERO_KEY}, {"pump-z": "small-order point"}, ""),
    (
        "several-kinds",
        {
            "pump-a": K1,
            "pump-b": IDENTITY_KEY,
            "pump-c": ORDER_8_KEY,
            "pump-d": MIXED_KEY.hex(),
            "pump-e": NON_CANONICAL_KEY,
            "pump-f": K2,
        },
        {
            "pump-b": "small-order point",
            "pump-c": "small-order point",
            "pump-d": "small-order component",
            "pump-e": "not a canonical encoding",
        },
        "",
    ),
]


@pytest.mark.parametrize(
    ("database_url", "rows", "named"),
    on_both_databases([(case, rows, named, where) for case, rows, named, where in UNUSABLE]),
    indirect=["database_url"],
)
def test_upgrade_refuses_devices_enrolled_with_unusable_keys_and_names_them(
    database_url: str, engine_at_0002: Engine, rows: dict[str, str], named: dict[str, str]
) -> None:
    add_devices(engine_at_0002, rows)
    with pytest.raises(ServerError) as refused:
        migrate(database_url)
    message = str(refused.value)
    assert "migration 0003" in message and "SRV-DEVICE-SPOOF" in message
    for device_id, why in named.items():
        assert f"{device_id!r} (the stored public key " in message
        assert why in message.split(f"{device_id!r} (", 1)[1].split(")", 1)[0]
    assert all(repr(d) not in message for d in rows if d not in named)
    # The operator is told what to do.
    assert "Revoke each of them" in message and "freshly generated keys" in message
    # Nothing changed: still revision 0002, the rows as they were.
    assert revision(engine_at_0002) == "0002"
    assert stored_keys(engine_at_0002) == rows


def test_upgrade_from_0001_stops_at_a_whole_revision_and_resumes_after_the_remedy(
    database_url: str, engine_at_0001: Engine
) -> None:
    rows = {"pump-a": K1.upper(), "pump-z": ZERO_KEY}
    add_devices(engine_at_0001, rows)
    with pytest.raises(ServerError, match="'pump-z' \\(the stored public key is a small-order"):
        migrate(database_url)
    # PostgreSQL runs the whole upgrade in one transaction: nothing happened.
    # SQLite has no transactional DDL, so Alembic commits each revision: 0002
    # is there in full (keys in their stored form, the unique index).
    indexes = {ix["name"] for ix in inspect(engine_at_0001).get_indexes("devices")}
    if engine_at_0001.dialect.name == "postgresql":
        assert revision(engine_at_0001) == "0001"
        assert stored_keys(engine_at_0001) == rows
        assert "ix_devices_public_key" not in indexes
    else:
        assert revision(engine_at_0001) == "0002"
        assert stored_keys(engine_at_0001) == {"pump-a": K1, "pump-z": ZERO_KEY}
        assert "ix_devices_public_key" in indexes
    with engine_at_0001.begin() as conn:
        conn.execute(
            DEVICES.update().where(DEVICES.c.device_id == "pump-z").values(revoked_at=utcnow())
        )
    migrate(database_url)
    assert revision(engine_at_0001) == HEAD
    assert stored_keys(engine_at_0001) == {"pump-a": K1, "pump-z": ZERO_KEY}


def test_upgrade_passes_once_the_named_devices_are_revoked(
    database_url: str, engine_at_0002: Engine
) -> None:
    add_devices(engine_at_0002, {"pump-a": K1, "pump-z": ZERO_KEY})
    with pytest.raises(ServerError):
        migrate(database_url)
    # The remedy the error names: revoke (their requests are refused anyway).
    with engine_at_0002.begin() as conn:
        conn.execute(
            DEVICES.update().where(DEVICES.c.device_id == "pump-z").values(revoked_at=utcnow())
        )
    migrate(database_url)
    assert revision(engine_at_0002) == HEAD
    assert stored_keys(engine_at_0002) == {"pump-a": K1, "pump-z": ZERO_KEY}


def schema(engine: Engine) -> dict[str, Any]:
    """Tables with their columns (name, type, nullable) and indexes."""
    found = inspect(engine)
    return {
        table: (
            [(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(table)],
            sorted((ix["name"] or "", ix["unique"]) for ix in found.get_indexes(table)),
        )
        for table in found.get_table_names()
    }


@pytest.mark.parametrize("rows", [{}, {"pump-a": K1, "pump-b": K2}], ids=["empty", "good-keys"])
def test_upgrade_to_0003_of_a_clean_database_changes_nothing(
    database_url: str, engine_at_0002: Engine, rows: dict[str, str]
) -> None:
    if rows:
        add_devices(engine_at_0002, rows)
    before = schema(engine_at_0002)
    upgrade_to(database_url, "0003")
    assert revision(engine_at_0002) == "0003"
    assert stored_keys(engine_at_0002) == rows
    assert schema(engine_at_0002) == before
    # And back: 0003 has nothing to undo.
    command.downgrade(alembic_config(database_url), "0002")
    assert revision(engine_at_0002) == "0002"
