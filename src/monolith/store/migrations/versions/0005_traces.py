"""Traces: a job keeps its submit's W3C traceparent, which its runs link to and its callback carries; a batch
keeps its create request's, which its runs link to.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("traceparent", sa.Text))
    op.add_column("batches", sa.Column("traceparent", sa.Text))
