"""Versioned schema: the migrations build exactly the declared tables, replicas starting together take turns,
and a database made by release 0.1.0 (SQLite, no version table) is adopted with its data."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from monolith.store.batches import BatchStore
from monolith.store.database import MIGRATIONS, Database, open_database
from monolith.store.files import FileStore
from monolith.store.jobs import JobStore
from monolith.store.tables import metadata
from tests.store.test_jobs import claim_one

# Release 0.1.0's own DDL (jobs/store.py and jobs/batches.py of that release), verbatim.
SCHEMA_0_1_0 = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    request BLOB NOT NULL,
    request_hash TEXT NOT NULL,
    result BLOB,
    error BLOB,
    idempotency_key TEXT UNIQUE,
    callback_url TEXT,
    callback_state TEXT,
    callback_attempts INTEGER NOT NULL DEFAULT 0,
    callback_next_at REAL,
    runs INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_callbacks ON jobs (callback_state, callback_next_at);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, filename TEXT NOT NULL, purpose TEXT NOT NULL, bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE, endpoint TEXT NOT NULL, input_file_id TEXT NOT NULL, output_file_id TEXT NOT NULL,
    completion_window TEXT NOT NULL, status TEXT NOT NULL, metadata TEXT,
    total INTEGER NOT NULL DEFAULT 0, completed INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL, in_progress_at INTEGER, completed_at INTEGER, cancelled_at INTEGER,
    failed_at INTEGER, error TEXT
);
"""


def head() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def differences(connection) -> list:
    return compare_metadata(MigrationContext.configure(connection), metadata)


async def test_the_migrations_build_the_declared_schema(db: Database) -> None:
    async with db.read() as conn:
        assert await conn.run_sync(differences) == []
        assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar() == head()


async def test_replicas_starting_together_migrate_once(database_url: str, tmp_path: Path) -> None:
    databases = await asyncio.gather(*(open_database(database_url, tmp_path) for _ in range(4)))
    try:
        async with databases[0].read() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM alembic_version"))).scalar() == 1
            assert await conn.run_sync(differences) == []
    finally:
        await asyncio.gather(*(d.close() for d in databases))


async def test_a_release_0_1_0_database_is_adopted_with_its_jobs_and_batches(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA_0_1_0)
    old.execute(
        "INSERT INTO jobs (id, kind, status, request, request_hash, result, created_at, finished_at)"
        " VALUES ('job-done', 'rag', 'succeeded', X'7B7D', 'h1', CAST('{\"answer\": \"kept\"}' AS BLOB), 1.0, 2.0)"
    )
    old.execute(
        "INSERT INTO jobs (id, kind, status, request, request_hash, runs, created_at, started_at)"
        " VALUES ('job-was-running', 'chat', 'running', X'7B7D', 'h2', 1, 1.0, 1.5)"
    )
    old.execute("INSERT INTO files VALUES ('file-1', 'in.jsonl', 'batch', 10, 1)")
    old.execute(
        "INSERT INTO batches (id, endpoint, input_file_id, output_file_id, completion_window, status, created_at)"
        " VALUES ('batch_1', '/v1/completions', 'file-1', 'file-2', '24h', 'in_progress', ?)",
        (int(time.time()),),
    )
    old.commit()
    old.close()

    db = await open_database(str(path), tmp_path)
    try:
        jobs = JobStore(db, "new-release", lease_s=30, max_runs=3)
        done = await jobs.get("job-done")
        assert done.status == "succeeded" and done.result == b'{"answer": "kept"}'
        # 0.1.0 re-ran a job that was running when it stopped; so does the new release, with a lease.
        again = await claim_one(jobs)
        assert again.id == "job-was-running" and again.runs == 2
        batches = BatchStore(db, FileStore(db, tmp_path / "files"), "new-release", lease_s=30, max_runs=3)
        assert (await batches.files.get_file("file-1")).bytes == 10
        resumed = await batches.claim_shard()
        assert resumed.batch_id == "batch_1" and resumed.plan.end_byte is None, "one shard over the whole file"
        assert (await batches.get_batch("batch_1")).status == "in_progress"
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar() == head()
    finally:
        await db.close()
