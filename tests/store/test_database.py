"""`store.database` as operators write it becomes the right async driver; logs never show the password."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from monolith.bench.peers import free_port
from monolith.bench.postgres import PostgresServer
from monolith.errors import StoreDown
from monolith.metrics import STORE_UP
from monolith.store.database import Database, database_url, open_database


def test_a_relative_path_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    url = database_url("jobs.sqlite3", tmp_path)
    assert url.drivername == "sqlite+aiosqlite" and url.database == str((tmp_path / "jobs.sqlite3").resolve())
    assert database_url("/abs/jobs.db", tmp_path).database == "/abs/jobs.db"


def test_postgresql_urls_keep_their_libpq_parameters_and_hide_the_password(tmp_path: Path) -> None:
    for scheme in ("postgresql", "postgres"):
        url = database_url(f"{scheme}://app:s3cret@db.internal:5432/app?sslmode=require", tmp_path)
        assert url.drivername == "postgresql+psycopg"
        assert url.query == {"sslmode": "require"} and url.password == "s3cret"
        shown = Database(url).describe()
        assert "s3cret" not in shown and "db.internal:5432/app" in shown


async def test_an_unreachable_store_is_a_store_down_in_bounded_time(tmp_path: Path) -> None:
    """Nothing listens (refused at once), or something listens and never answers (a network that drops packets):
    both are a StoreDown (a 503 at the edge) within about twice the timeout, never a hang."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections into its backlog and never says a word
    refused_port = free_port()
    try:
        for port in (refused_port, silent.getsockname()[1]):
            db = Database(database_url(f"postgresql://u:p@127.0.0.1:{port}/x", tmp_path), timeout_s=1)
            started = time.monotonic()
            with pytest.raises(StoreDown) as raised:
                async with db.read() as conn:
                    await conn.execute(text("SELECT 1"))
            assert time.monotonic() - started < 3
            assert (
                raised.value.status_code == 503
                and raised.value.retry_after
                and raised.value.code == "store_unavailable"
            )
            assert not db.health.up and STORE_UP._value.get() == 0
            await db.engine.dispose()
    finally:
        silent.close()


async def test_the_store_coming_back_is_said_once_and_the_gauge_follows(tmp_path: Path, caplog) -> None:
    db = Database(database_url("jobs.sqlite3", tmp_path), timeout_s=1)
    db.health.failed(OSError("gone"))
    db.health.failed(OSError("still gone"))
    assert STORE_UP._value.get() == 0 and db.health.backoff_s() == 1.0
    async with db.read() as conn:
        await conn.execute(text("SELECT 1"))
    assert db.health.up and STORE_UP._value.get() == 1
    said = [r.getMessage() for r in caplog.records if "job store" in r.getMessage()]
    assert len(said) == 2 and "unreachable" in said[0] and "back after" in said[1]
    await db.engine.dispose()


async def test_connections_the_server_reset_are_replaced_before_use(tmp_path: Path, postgres: PostgresServer) -> None:
    """A failover that keeps the address, a proxy or a managed server closes the pool's connections: the next
    calls get fresh ones (pre-ping) instead of failing, and the store is never reported down."""
    db = Database(database_url(postgres.create_database(f"t_{uuid.uuid4().hex[:16]}"), tmp_path), timeout_s=2)
    try:
        pids: set[int] = set()
        for _ in range(3):
            async with db.read() as conn:
                pids.add((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        with psycopg.connect(postgres.url(), autocommit=True) as admin:
            for pid in pids:  # what a switchover does to every client connection
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        for _ in range(3):
            async with db.begin() as conn:
                new_pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                assert new_pid not in pids
        assert db.health.up and STORE_UP._value.get() == 1
    finally:
        await db.engine.dispose()


async def test_sqlite_writers_of_one_process_take_turns_and_a_reader_does_not_wait(tmp_path: Path) -> None:
    """SQLite has one writer at a time: this process's writers queue on a lock, not in SQLite's busy handler (which
    sleeps between its tries), while a reader goes on beside a writer (WAL)."""
    db = await open_database("jobs.sqlite3", tmp_path)
    second_in = asyncio.Event()

    async def second_writer() -> None:
        async with db.begin() as conn:
            second_in.set()
            await conn.execute(text("INSERT INTO scratch VALUES (2)"))

    try:
        async with db.begin() as conn:
            await conn.execute(text("CREATE TABLE scratch (x INTEGER)"))
        async with db.begin() as conn:
            await conn.execute(text("INSERT INTO scratch VALUES (1)"))
            second = asyncio.create_task(second_writer())
            await asyncio.sleep(0.3)
            assert not second_in.is_set(), "a second writer began while the first was open"
            async with db.read() as reader:  # a reader does not wait for the writer (it sees the last commit)
                assert (await reader.execute(text("SELECT count(*) FROM jobs"))).scalar() == 0
        await asyncio.wait_for(second, 5)
        async with db.read() as reader:
            assert (await reader.execute(text("SELECT x FROM scratch ORDER BY x"))).scalars().all() == [1, 2]
    finally:
        await db.close()
