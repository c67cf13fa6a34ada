"""Every store test runs on both backends: SQLite in a temporary directory, and a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monolith.bench.postgres import PostgresServer
from monolith.store.database import Database, open_database


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """`store.database` as an operator writes it: a path, or a postgresql:// URL (a fresh database each)."""
    if request.param == "sqlite":
        return "jobs.sqlite3"
    postgres: PostgresServer = request.getfixturevalue("postgres")
    return postgres.create_database(f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture
async def db(database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database(database_url, tmp_path)
    yield database
    await database.close()


@pytest.fixture
async def other_db(database_url: str, tmp_path: Path, db: Database) -> AsyncIterator[Database]:
    """A second replica's own connection pool on the same database."""
    database = await open_database(database_url, tmp_path)
    yield database
    await database.close()
