"""The schema of release 0.1.0 (jobs, files, batches); a database that release made already has it.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # 0.1.0 created these tables itself, without a version table: adopt them as they are.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "jobs" not in existing:
        op.create_table(
            "jobs",
            sa.Column("seq", Seq, primary_key=True, autoincrement=True),
            sa.Column("id", sa.Text, nullable=False, unique=True),
            sa.Column("kind", sa.Text, nullable=False),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("request", sa.LargeBinary, nullable=False),
            sa.Column("request_hash", sa.Text, nullable=False),
            sa.Column("result", sa.LargeBinary),
            sa.Column("error", sa.LargeBinary),
            sa.Column("idempotency_key", sa.Text, unique=True),
            sa.Column("callback_url", sa.Text),
            sa.Column("callback_state", sa.Text),
            sa.Column("callback_attempts", sa.Integer, nullable=False, server_default="0"),
            sa.Column("callback_next_at", sa.Float),
            sa.Column("runs", sa.Integer, nullable=False, server_default="0"),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("started_at", sa.Float),
            sa.Column("finished_at", sa.Float),
            sqlite_autoincrement=True,
        )
        op.create_index("jobs_status", "jobs", ["status", "seq"])
        op.create_index("jobs_callbacks", "jobs", ["callback_state", "callback_next_at"])
    if "files" not in existing:
        op.create_table(
            "files",
            sa.Column("id", sa.Text, primary_key=True),
            sa.Column("filename", sa.Text, nullable=False),
            sa.Column("purpose", sa.Text, nullable=False),
            sa.Column("bytes", sa.BigInteger, nullable=False),
            sa.Column("created_at", sa.BigInteger, nullable=False),
        )
    if "batches" not in existing:
        op.create_table(
            "batches",
            sa.Column("seq", Seq, primary_key=True, autoincrement=True),
            sa.Column("id", sa.Text, nullable=False, unique=True),
            sa.Column("endpoint", sa.Text, nullable=False),
            sa.Column("input_file_id", sa.Text, nullable=False),
            sa.Column("output_file_id", sa.Text, nullable=False),
            sa.Column("completion_window", sa.Text, nullable=False),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("metadata", sa.Text),
            sa.Column("total", sa.Integer, nullable=False, server_default="0"),
            sa.Column("completed", sa.Integer, nullable=False, server_default="0"),
            sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
            sa.Column("created_at", sa.BigInteger, nullable=False),
            sa.Column("in_progress_at", sa.BigInteger),
            sa.Column("completed_at", sa.BigInteger),
            sa.Column("cancelled_at", sa.BigInteger),
            sa.Column("failed_at", sa.BigInteger),
            sa.Column("error", sa.Text),
            sqlite_autoincrement=True,
        )
