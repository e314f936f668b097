"""upload records: who is publishing what, committed before the repository is written

A server that died after ``timestamp.json`` was replaced but before the
publish committed indexed the release as published by "reconciled", and the
audit entry lost its version, token and signers (issue 19, finding 7; threat
SRV-REPUDIATION). Each publish now records its publisher, token, release and
signers in ``uploads`` first, in a transaction of its own, and the
reconciliation takes them from there. A new, empty table: nothing to convert.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09 12:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("product", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("release_counter", sa.BigInteger(), nullable=False),
        sa.Column("metadata_version", sa.BigInteger(), nullable=False),
        sa.Column("firmware_sha256", sa.String(length=64), nullable=False),
        sa.Column("signers", sa.JSON(), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("bundle_sha256", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.create_index("ix_uploads_release", ["product", "version"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_index("ix_uploads_release")
    op.drop_table("uploads")
