"""One SQLAlchemy async engine for a SQLite path or a postgresql:// URL, its versioned migrations, and the
few places where the two dialects differ (the clock, upserts, SQLite's connection settings)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import URL, Connection, Float, Table, event, make_url, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from monolith.config import DATABASE_SCHEMES
from monolith.errors import StorageFull, StoreDown
from monolith.metrics import STORE_UP

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key: replicas starting together migrate one after the other.
_MIGRATION_LOCK = 0x6D6F6E6F  # "mono"
RETRY_AFTER_S = 5  # what a client that met a store outage is told to wait


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


def oldest_unlocked(table: Table, *where: Any, limit: int = 1) -> Any:
    """The `seq` of the oldest `limit` rows matching `where`, as a subquery to claim them in one UPDATE (`seq IN`):
    rows another replica is claiming right now are skipped (PostgreSQL's FOR UPDATE SKIP LOCKED; SQLite has one
    writer)."""
    return select(table.c.seq).where(*where).order_by(table.c.seq).limit(limit).with_for_update(skip_locked=True)


def database_url(database: str, data_dir: Path) -> URL:
    """`store.database`: a SQLite path (relative paths in data_dir) or a URL; the async driver chosen here."""
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


# What an unreachable, restarting or overloaded database raises (a constraint violation is none of these).
UNREACHABLE = (OperationalError, InterfaceError, PoolTimeout, OSError, TimeoutError)
MAX_BACKOFF_S = 5.0
SQLITE_FULL = 13
FULL_SAID_EVERY_S = 60.0


def disk_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL, PostgreSQL's disk_full (SQLSTATE 53100), or the OS's ENOSPC / EDQUOT."""
    cause = getattr(exc, "orig", None) or exc
    if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return getattr(cause, "sqlite_errorcode", None) == SQLITE_FULL or getattr(cause, "sqlstate", None) == "53100"


class StoreHealth:
    """Whether the job store answered its last call, for readiness's detail, `monolith_store_up` and the runners'
    backoff; one warning when it goes away and one when it is back, not a traceback per call."""

    def __init__(self, describe: str) -> None:
        self.describe = describe
        self.down_since: float | None = None
        self.full_said_at: float | None = None
        self.failures = 0
        STORE_UP.set(1)

    @property
    def up(self) -> bool:
        return self.down_since is None

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.down_since is None:
            self.down_since = time.monotonic()
            STORE_UP.set(0)
            log.warning(
                "the job store is unreachable (%s: %s): what needs it answers 503 and the runners retry with backoff;"
                " real-time serving goes on",
                type(exc).__name__,
                str(exc).splitlines()[0][:200] if str(exc) else "",
            )

    def full(self) -> None:
        """The store answered that its disk is full: said at most once a minute (a write that needs no new page
        still goes through on a full disk, so no write tells when there is room again)."""
        self.failures += 1
        now = time.monotonic()
        if self.full_said_at is None or now - self.full_said_at > FULL_SAID_EVERY_S:
            self.full_said_at = now
            log.warning("the job store's disk is full: submits answer 507 and the runners retry with backoff")

    def answered(self) -> None:
        if self.down_since is not None:
            log.warning(
                "the job store is back after %.1f s (%d failed calls)",
                time.monotonic() - self.down_since,
                self.failures,
            )
            self.down_since = None
            self.failures = 0
            STORE_UP.set(1)

    def backoff_s(self) -> float:
        """How long a runner's loop waits before its next try while the store is down: 0.25 s, doubling, 5 s."""
        return min(MAX_BACKOFF_S, 0.25 * 2 ** min(self.failures, 5))


class Database:
    """The engine and what differs by dialect. SQLite is for one host (WAL needs shared memory, so not
    over a network filesystem); PostgreSQL for many replicas.

    Every call is bounded by `timeout_s` (connecting, waiting for a pooled connection, running); an outage is a
    StoreDown (503 with Retry-After at the edge, a retry later for the runners), never a hang or a 500."""

    def __init__(self, url: URL, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.dialect = url.get_backend_name()
        if self.is_sqlite:
            Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_async_engine(url)
            _sqlite_settings(self.engine)
        else:
            # pre_ping: managed servers, proxies and a failover close connections; a dead one is replaced before
            # use. connect_timeout and pool_timeout bound the wait for a connection; statement_timeout (unless the
            # operator's URL sets its own options) a query the server cannot finish.
            connect_args: dict[str, Any] = {"connect_timeout": max(1, round(timeout_s))}
            if "options" not in url.query:
                connect_args["options"] = f"-c statement_timeout={round(timeout_s * 1000)}"
            self.engine = create_async_engine(
                url,
                pool_size=5,
                max_overflow=10,
                pool_pre_ping=True,
                pool_timeout=timeout_s,
                connect_args=connect_args,
            )
        self.health = StoreHealth(self.describe())
        # SQLite has one writer at a time. Writers of this process queue here rather than in SQLite's busy handler,
        # which sleeps 1 to 100 ms between its tries: 24 async jobs submitted at once took ~0.2 s longer to drain
        # through it (docs/benchmarks.md, "Mixed load"). Another process on the same file still meets busy_timeout.
        self._writer = asyncio.Lock() if self.is_sqlite else None

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
        """A write transaction (on SQLite, after this process's writer before it)."""
        async with self._bounded(), self._writer or contextlib.nullcontext(), self.engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self._bounded(), self.engine.connect() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _bounded(self) -> AsyncIterator[None]:
        """One call: at most twice timeout_s in all (a network that drops packets answers nothing at all), and
        what an outage raises becomes StoreDown."""
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                yield
        except UNREACHABLE as exc:
            if disk_full(exc):  # the database answered: it has no room (SQLite's data dir, PostgreSQL's volume)
                self.health.full()
                raise StorageFull("the job store's disk is full; try again later", retry_after=RETRY_AFTER_S) from exc
            self.health.failed(exc)
            raise StoreDown("the job store is unreachable; retry later", retry_after=RETRY_AFTER_S) from exc
        self.health.answered()

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


async def open_database(database: str, data_dir: Path, timeout_s: float = 5.0) -> Database:
    db = Database(database_url(database, data_dir), timeout_s)
    await db.migrate()
    return db
