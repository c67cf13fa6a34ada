"""Owners: jobs, files and batches belong to the API key (its id) that made them; an Idempotency-Key is
unique per owner, no longer across all of them.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("files", "batches"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("owner", sa.Text, nullable=False, server_default=""))
    if op.get_bind().dialect.name == "sqlite":
        # The unique constraint on idempotency_key has no name in SQLite (0.1.0 declared it on the column), so
        # the table is rebuilt from a definition without it.
        with op.batch_alter_table("jobs", recreate="always", copy_from=_jobs_0002()) as jobs:
            jobs.add_column(sa.Column("owner", sa.Text, nullable=False, server_default=""))
            jobs.create_unique_constraint("jobs_owner_idempotency_key", ["owner", "idempotency_key"])
    else:
        op.add_column("jobs", sa.Column("owner", sa.Text, nullable=False, server_default=""))
        op.drop_constraint("jobs_idempotency_key_key", "jobs", type_="unique")
        op.create_unique_constraint("jobs_owner_idempotency_key", "jobs", ["owner", "idempotency_key"])
    op.create_index("jobs_owner", "jobs", ["owner", "seq"])
    op.create_index("batches_owner", "batches", ["owner", "seq"])
    op.create_index("files_owner", "files", ["owner", "created_at"])


def _jobs_0002() -> sa.Table:
    """The jobs table as 0002 left it, less the unique constraint on idempotency_key."""
    seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    return sa.Table(
        "jobs",
        sa.MetaData(),
        sa.Column("seq", seq, primary_key=True, autoincrement=True),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("request", sa.LargeBinary, nullable=False),
        sa.Column("request_hash", sa.Text, nullable=False),
        sa.Column("result", sa.LargeBinary),
        sa.Column("error", sa.LargeBinary),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("callback_url", sa.Text),
        sa.Column("callback_state", sa.Text),
        sa.Column("callback_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("callback_next_at", sa.Float),
        sa.Column("runs", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("lease_owner", sa.Text),
        sa.Column("lease_expires_at", sa.Float),
        sa.Column("callback_owner", sa.Text),
        sa.Column("callback_lease_expires_at", sa.Float),
        sa.Index("jobs_status", "status", "seq"),
        sa.Index("jobs_callbacks", "callback_state", "callback_next_at"),
        sqlite_autoincrement=True,
    )
