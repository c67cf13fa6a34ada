"""Shards: a batch's lines split into shards that any replica claims under a lease; batches get a round-robin
turn (`claimed_at`), an end (`expires_at`, `expired_at`) and an error file (`error_file_id`, OpenAI's: the failed
lines, apart from the output). A batch unfinished at the upgrade becomes one shard
over its whole file (its runner counts the lines and adopts the output written so far).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "batch_shards",
        sa.Column("seq", Seq, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.Text, nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("start_byte", sa.BigInteger, nullable=False),
        sa.Column("end_byte", sa.BigInteger),
        sa.Column("first_line", sa.Integer, nullable=False),
        sa.Column("lines", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("runs", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.Text),
        sa.Column("lease_expires_at", sa.Float),
        sa.UniqueConstraint("batch_id", "idx", name="batch_shards_batch_idx"),
        sqlite_autoincrement=True,
    )
    op.create_index("batch_shards_status", "batch_shards", ["status", "batch_id"])
    with op.batch_alter_table("batches") as table:
        table.add_column(sa.Column("claimed_at", sa.Float))
        table.add_column(sa.Column("expires_at", sa.BigInteger))
        table.add_column(sa.Column("expired_at", sa.BigInteger))
        table.add_column(sa.Column("error_file_id", sa.Text))
    op.execute("UPDATE batches SET expires_at = created_at + 86400")
    op.execute(
        "INSERT INTO batch_shards (batch_id, idx, start_byte, end_byte, first_line, lines, status, runs) "
        "SELECT id, 0, 0, NULL, 1, total, 'queued', 0 FROM batches "
        "WHERE status IN ('validating', 'in_progress', 'cancelling')"
    )
