"""One SQLAlchemy async engine for a SQLite path or a postgresql:// URL, its versioned migrations, and the
few places where the two dialects differ (the clock, upserts, SQLite's connection settings)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import URL, Connection, Float, Table, event, make_url, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from monolith.config import DATABASE_SCHEMES

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key: replicas starting together migrate one after the other.
_MIGRATION_LOCK = 0x6D6F6E6F  # "mono"


class epoch_now(FunctionElement):
    """The database's clock in seconds since the epoch: replicas compare leases against one clock."""

    type = Float()
    inherit_cache = True


@compiles(epoch_now, "postgresql")
def _pg_now(element: epoch_now, compiler: Any, **kw: Any) -> str:
    return "EXTRACT(EPOCH FROM clock_timestamp())::double precision"


@compiles(epoch_now, "sqlite")
def _sqlite_now(element: epoch_now, compiler: Any, **kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


def oldest_unlocked(table: Table, *where: Any) -> Any:
    """The oldest row (by `seq`) matching `where`, as a subquery to claim it in one UPDATE: rows another
    replica is claiming right now are skipped (PostgreSQL's FOR UPDATE SKIP LOCKED; SQLite has one writer)."""
    return (
        select(table.c.seq).where(*where).order_by(table.c.seq).limit(1).with_for_update(skip_locked=True)
    ).scalar_subquery()


def database_url(database: str, data_dir: Path) -> URL:
    """`jobs.database`: a SQLite path (relative paths in data_dir) or a URL; the async driver chosen here."""
    if "://" not in database:
        path = Path(database)
        path = path if path.is_absolute() else data_dir / path
        return URL.create("sqlite+aiosqlite", database=str(path.resolve()))
    url = make_url(database)
    backend = url.get_backend_name()
    if backend not in DATABASE_SCHEMES:
        raise ValueError(f"unsupported database {backend!r}: give a SQLite path or a postgresql:// URL")
    if backend != "sqlite":
        # psycopg 3: libpq's URL parameters (sslmode, sslrootcert, ...) work as operators write them.
        return url.set(drivername="postgresql+psycopg")
    return url.set(drivername="sqlite+aiosqlite")


def _sqlite_settings(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy's own BEGIN (below), not the sqlite3 module's implicit one, which skips DDL.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL + NORMAL: a commit survives the process being killed (not a power cut) without an fsync each.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")  # wait for another writer instead of failing
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")


class Database:
    """The engine and what differs by dialect. SQLite is for one host (WAL needs shared memory, so not
    over a network filesystem); PostgreSQL for many replicas."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self.dialect = url.get_backend_name()
        if self.is_sqlite:
            Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_async_engine(url)
            _sqlite_settings(self.engine)
        else:
            # pre_ping: managed servers and proxies close idle connections.
            self.engine = create_async_engine(url, pool_size=5, max_overflow=10, pool_pre_ping=True)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def describe(self) -> str:
        """For logs: never the password."""
        return self.url.render_as_string(hide_password=True)

    def insert(self, table: Table) -> Any:
        """An INSERT that takes on_conflict_do_update / do_nothing (both dialects spell it alike)."""
        return (sqlite.insert if self.is_sqlite else postgresql.insert)(table)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    async def migrate(self) -> None:
        """Brings the schema to the newest version; replicas starting together take turns."""
        if self.is_sqlite:
            lock_path = Path(f"{self.url.database}.migrate-lock")
            with lock_path.open("w") as lock:
                await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
                async with self.engine.begin() as conn:
                    await conn.run_sync(_upgrade)
        else:
            async with self.engine.begin() as conn:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
                await conn.run_sync(_upgrade)
        log.info("job store at the newest schema: %s", self.describe())

    async def close(self) -> None:
        await self.engine.dispose()


def _upgrade(connection: Connection) -> None:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def open_database(database: str, data_dir: Path) -> Database:
    db = Database(database_url(database, data_dir))
    await db.migrate()
    return db
