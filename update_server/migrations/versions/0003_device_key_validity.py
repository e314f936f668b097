"""Every enrolled public key is a usable Ed25519 key

Until now an enrollment took any 32 bytes that parse as an Ed25519 point,
small-order points included: for such a key (32 zero bytes, say) a signature
with S = 0 verifies over any message, so anyone could check in as that pump
(threat SRV-DEVICE-SPOOF). Enrollment now refuses those keys
(:mod:`update_server.device_keys`); this revision refuses the upgrade, naming
the devices, while any device is stored with a key that enrollment would
refuse today, so an operator learns which pumps to revoke and re-enroll
instead of those pumps silently getting 401. The check never changes a row,
so on a clean database it is a no-op.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-09 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

from update_server.device_keys import DeviceKeyError, check_stored_key
from update_server.errors import ServerError

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: Devices named in the error at most; the rest are counted.
_SHOWN = 20

_DEVICES = sa.table(
    "devices",
    sa.column("device_id", sa.String),
    sa.column("public_key", sa.String),
    sa.column("revoked_at", sa.DateTime),
)


class InvalidStoredKeyError(ServerError):
    """Devices are enrolled with public keys that are not usable Ed25519 keys."""


def _invalid_keys_error(bad: list[tuple[str, str]]) -> InvalidStoredKeyError:
    shown = "; ".join(f"{device_id!r} ({why})" for device_id, why in bad[:_SHOWN])
    more = f" (and {len(bad) - _SHOWN} more devices)" if len(bad) > _SHOWN else ""
    return InvalidStoredKeyError(
        "cannot upgrade to migration 0003: these devices are enrolled with public keys"
        " that are not usable Ed25519 keys, and for a small-order key a forged signature"
        f" verifies (threat SRV-DEVICE-SPOOF): {shown}{more}. Revoke each of them"
        " (DELETE /api/v1/devices/<device_id> with an operator token, on a server of the"
        " current version), enroll those pumps again under new device ids with freshly"
        " generated keys (pumpguard device keygen, then pumpguard device enroll), then"
        " upgrade again"
    )


def _invalid_devices(conn: sa.Connection) -> list[tuple[str, str]]:
    """``(device_id, what is wrong)`` of each device whose stored key is refused.

    Revoked devices are left out: their requests are refused whatever their
    key, and revocation is the remedy the error asks for.
    """
    rows = conn.execute(
        sa.select(_DEVICES.c.device_id, _DEVICES.c.public_key)
        .where(_DEVICES.c.revoked_at.is_(None))
        .order_by(_DEVICES.c.device_id)
    ).all()
    bad = []
    for device_id, key in rows:
        try:
            check_stored_key(key)
        except DeviceKeyError as e:
            bad.append((device_id, str(e)))
    return bad


def upgrade() -> None:
    if op.get_context().as_sql:
        # Offline (--sql) there is nothing to read, and this revision changes
        # no schema: the server's check-in refuses such keys anyway.
        return
    bad = _invalid_devices(op.get_bind())
    if bad:
        # Nothing written: the database stays at revision 0002.
        raise _invalid_keys_error(bad)


def downgrade() -> None:
    # Nothing to undo: the upgrade only checked the stored keys.
    pass
