"""The store's tables at the newest migration, declared once for both dialects.

The migrations in `migrations/versions` build the same schema step by step; a test compares the two.
Scheduling times (`*_expires_at`, `callback_next_at`) are the database's clock (`database.epoch_now`), so
replicas with skewed clocks agree on when a lease ran out; the times a job body shows are the writer's.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# SQLite wants INTEGER PRIMARY KEY (the rowid) for AUTOINCREMENT; PostgreSQL gets a bigint identity.
Seq = BigInteger().with_variant(Integer(), "sqlite")

jobs = Table(
    "jobs",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", Text, nullable=False, unique=True),
    Column("kind", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("request", LargeBinary, nullable=False),
    Column("request_hash", Text, nullable=False),
    Column("result", LargeBinary),
    Column("error", LargeBinary),
    # The API key (its id) that submitted the job; "" on a server without keys.
    Column("owner", Text, nullable=False, server_default=""),
    Column("idempotency_key", Text),
    Column("callback_url", Text),
    Column("callback_state", Text),
    Column("callback_attempts", Integer, nullable=False, server_default="0"),
    Column("callback_next_at", Float),
    Column("runs", Integer, nullable=False, server_default="0"),
    # A queued job is not claimed before this (the database's clock): a retry after an outage or a server error.
    Column("not_before", Float),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    # The replica running the job, until when; it renews while it works (heartbeat).
    Column("lease_owner", Text),
    Column("lease_expires_at", Float),
    # The replica delivering the job's callback, until when.
    Column("callback_owner", Text),
    Column("callback_lease_expires_at", Float),
    # The submit's W3C trace context, when it was traced: the job's runs link to it, its callback carries it.
    Column("traceparent", Text),
    Index("jobs_status", "status", "seq"),
    Index("jobs_callbacks", "callback_state", "callback_next_at"),
    Index("jobs_owner", "owner", "seq"),
    UniqueConstraint("owner", "idempotency_key", name="jobs_owner_idempotency_key"),
    sqlite_autoincrement=True,
)

files = Table(
    "files",
    metadata,
    Column("id", Text, primary_key=True),
    Column("filename", Text, nullable=False),
    Column("purpose", Text, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("owner", Text, nullable=False, server_default=""),
    Index("files_owner", "owner", "created_at"),
)

batches = Table(
    "batches",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", Text, nullable=False, unique=True),
    Column("endpoint", Text, nullable=False),
    Column("input_file_id", Text, nullable=False),
    Column("output_file_id", Text, nullable=False),
    Column("completion_window", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("metadata", Text),
    Column("total", Integer, nullable=False, server_default="0"),
    Column("completed", Integer, nullable=False, server_default="0"),
    Column("failed", Integer, nullable=False, server_default="0"),
    Column("created_at", BigInteger, nullable=False),
    Column("in_progress_at", BigInteger),
    Column("completed_at", BigInteger),
    Column("cancelled_at", BigInteger),
    Column("failed_at", BigInteger),
    Column("error", Text),
    Column("runs", Integer, nullable=False, server_default="0"),
    Column("lease_owner", Text),
    Column("lease_expires_at", Float),
    Column("owner", Text, nullable=False, server_default=""),
    # The create request's W3C trace context, when it was traced: the batch's runs link to it.
    Column("traceparent", Text),
    # When a shard of it was last claimed (the database's clock): shards are taken round-robin over batches.
    Column("claimed_at", Float),
    # Past this (created_at + completion_window) the batch ends `expired` with the lines it has.
    Column("expires_at", BigInteger),
    Column("expired_at", BigInteger),
    # The failed lines' file (OpenAI's error_file_id), set when the batch ends with any; the output holds the rest.
    Column("error_file_id", Text),
    Index("batches_owner", "owner", "seq"),
    sqlite_autoincrement=True,
)

# A batch's request lines in runs of a few hundred (`batch.shard_lines`), each claimed by one replica under a
# lease and answered into its own part file; the batch's output is assembled from the parts when it ends.
batch_shards = Table(
    "batch_shards",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("batch_id", Text, nullable=False),
    Column("idx", Integer, nullable=False),
    # The shard's bytes of the input file, [start_byte, end_byte); no end_byte: to the end of the file.
    Column("start_byte", BigInteger, nullable=False),
    Column("end_byte", BigInteger),
    Column("first_line", Integer, nullable=False),  # the file's line number at start_byte (error messages)
    Column("lines", Integer, nullable=False),  # request lines in it (blank lines aside)
    Column("status", Text, nullable=False),  # queued, completed, failed
    Column("runs", Integer, nullable=False, server_default="0"),
    # Its lines answered so far: the batch's request_counts are the sum over its shards while it runs.
    Column("completed", Integer, nullable=False, server_default="0"),
    Column("failed", Integer, nullable=False, server_default="0"),
    Column("lease_owner", Text),
    Column("lease_expires_at", Float),
    Index("batch_shards_status", "status", "batch_id"),
    UniqueConstraint("batch_id", "idx", name="batch_shards_batch_idx"),
    sqlite_autoincrement=True,
)

# Named leases for work only one replica should do at a time (housekeeping: the shared backlog gauge).
leases = Table(
    "leases",
    metadata,
    Column("name", Text, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("expires_at", Float, nullable=False),
)
