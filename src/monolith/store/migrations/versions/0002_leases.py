"""Leases: a replica holds the job, batch or callback it works on, and renews it; housekeeping leases.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as jobs:
        jobs.add_column(sa.Column("lease_owner", sa.Text))
        jobs.add_column(sa.Column("lease_expires_at", sa.Float))
        jobs.add_column(sa.Column("callback_owner", sa.Text))
        jobs.add_column(sa.Column("callback_lease_expires_at", sa.Float))
    with op.batch_alter_table("batches") as batches:
        batches.add_column(sa.Column("runs", sa.Integer, nullable=False, server_default="0"))
        batches.add_column(sa.Column("lease_owner", sa.Text))
        batches.add_column(sa.Column("lease_expires_at", sa.Float))
    op.create_table(
        "leases",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
