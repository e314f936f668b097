"""devices.public_key is unique

One key per pump (threat SRV-DEVICE-SPOOF): the enrollment's read-then-insert
check let two concurrent enrollments of one key under two device ids both
succeed; the unique index decides that race. Before it is created, keys are
brought to their one stored form (64 lower-case hex digits; an enrollment
could store a key followed by a newline, which ``bytes.fromhex`` reads as the
same key) and the upgrade refuses, naming the devices, when two devices
share a key, instead of failing on the index with a bare IntegrityError.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

from update_server.errors import ServerError

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: Groups of devices named in the error at most; the rest are counted.
_SHOWN = 20

_DEVICES = sa.table(
    "devices",
    sa.column("device_id", sa.String),
    sa.column("public_key", sa.String),
)


class SharedPublicKeyError(ServerError):
    """Devices share a public key: devices.public_key cannot become unique."""


def _canonical(key: str) -> str:
    """The stored form of a key: its 32 bytes as lower-case hex (else as is)."""
    try:
        raw = bytes.fromhex(key)
    except ValueError:
        return key
    return raw.hex() if len(raw) == 32 else key


def _shared_keys_error(shared: list[list[str]]) -> SharedPublicKeyError:
    groups = "; ".join(", ".join(repr(d) for d in ids) for ids in shared[:_SHOWN])
    more = f" (and {len(shared) - _SHOWN} more groups)" if len(shared) > _SHOWN else ""
    return SharedPublicKeyError(
        "cannot make devices.public_key unique (migration 0002): the devices of each"
        " group share a public key, so one extracted key speaks for the whole group"
        f" (threat SRV-DEVICE-SPOOF): {groups}{more}. Keep one device of each group and"
        " delete the others (their events and nonces go with them), enroll those pumps"
        " again with keys of their own, then upgrade again"
    )


def upgrade() -> None:
    if not op.get_context().as_sql:
        # Offline (--sql) there is nothing to read; CREATE UNIQUE INDEX still
        # refuses duplicated keys when the script runs.
        conn = op.get_bind()
        rows = conn.execute(
            sa.select(_DEVICES.c.device_id, _DEVICES.c.public_key).order_by(_DEVICES.c.device_id)
        ).all()
        by_key: dict[str, list[str]] = {}
        for device_id, key in rows:
            by_key.setdefault(_canonical(key), []).append(device_id)
        shared = [ids for ids in by_key.values() if len(ids) > 1]
        if shared:
            # Nothing written yet: the database stays at revision 0001.
            raise _shared_keys_error(shared)
        for device_id, key in rows:
            if _canonical(key) != key:
                conn.execute(
                    sa.update(_DEVICES)
                    .where(_DEVICES.c.device_id == device_id)
                    .values(public_key=_canonical(key))
                )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_public_key"), ["public_key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_public_key"))
