"""The OpenAI Batch API over HTTP: files and batches in SQLite, run one at a time, resumed after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monolith.admission import realtime_waiting
from monolith.batch import read_lines, run_batch
from monolith.serving import Services

log = logging.getLogger(__name__)

_SCHEMA = """
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
_BATCH_COLUMNS = (
    "id, endpoint, input_file_id, output_file_id, completion_window, status, metadata, total, completed, failed, "
    "created_at, in_progress_at, completed_at, cancelled_at, failed_at, error"
)
ACTIVE = ("validating", "in_progress", "cancelling")


@dataclass(frozen=True)
class FileRecord:
    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int

    def to_wire(self) -> dict[str, Any]:
        return {"object": "file", "status": "processed", **self.__dict__}


@dataclass(frozen=True)
class BatchRecord:
    id: str
    endpoint: str
    input_file_id: str
    output_file_id: str
    completion_window: str
    status: str
    metadata: str | None
    total: int
    completed: int
    failed: int
    created_at: int
    in_progress_at: int | None
    completed_at: int | None
    cancelled_at: int | None
    failed_at: int | None
    error: str | None

    def to_wire(self) -> dict[str, Any]:
        done = self.status in ("completed", "cancelled")
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": {"object": "list", "data": [{"code": "batch_failed", "message": self.error}]}
            if self.error
            else None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id if done else None,
            "error_file_id": None,
            "created_at": self.created_at,
            "in_progress_at": self.in_progress_at,
            "completed_at": self.completed_at,
            "cancelled_at": self.cancelled_at,
            "failed_at": self.failed_at,
            "expires_at": None,
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "metadata": json.loads(self.metadata) if self.metadata else None,
        }


class BatchStore:
    """Files on disk under `files_dir`, their records and the batches in SQLite."""

    def __init__(self, database: Path, files_dir: Path) -> None:
        files_dir.mkdir(parents=True, exist_ok=True)
        self.files_dir = files_dir
        self._db = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def path_of(self, file_id: str) -> Path:
        return self.files_dir / f"{file_id}.jsonl"

    def add_file(self, filename: str, purpose: str, content: bytes) -> FileRecord:
        record = FileRecord(f"file-{uuid.uuid4().hex}", filename, purpose, len(content), int(time.time()))
        partial = self.path_of(record.id).with_suffix(".partial")
        partial.write_bytes(content)
        partial.rename(self.path_of(record.id))
        with self._lock:
            self._db.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?)", tuple(record.__dict__.values()))
        return record

    def get_file(self, file_id: str) -> FileRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        return FileRecord(*row) if row else None

    def create_batch(self, endpoint: str, input_file_id: str, window: str, metadata: str | None) -> BatchRecord:
        batch_id, output = f"batch_{uuid.uuid4().hex}", f"file-{uuid.uuid4().hex}"
        with self._lock:
            self._db.execute(
                "INSERT INTO batches (id, endpoint, input_file_id, output_file_id, completion_window, status, metadata,"
                " created_at) VALUES (?, ?, ?, ?, ?, 'validating', ?, ?)",
                (batch_id, endpoint, input_file_id, output, window, metadata, int(time.time())),
            )
        batch = self.get_batch(batch_id)
        assert batch is not None
        return batch

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_BATCH_COLUMNS} FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return BatchRecord(*row) if row else None

    def list_batches(self, limit: int, after: str | None) -> tuple[list[BatchRecord], bool]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_BATCH_COLUMNS} FROM batches WHERE seq > COALESCE((SELECT seq FROM batches WHERE id = ?), 0)"
                " ORDER BY seq LIMIT ?",
                (after, limit + 1),
            ).fetchall()
        return [BatchRecord(*r) for r in rows[:limit]], len(rows) > limit

    def next_active(self) -> BatchRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_BATCH_COLUMNS} FROM batches WHERE status IN ('validating', 'in_progress') "
                "ORDER BY seq LIMIT 1"
            ).fetchone()
        return BatchRecord(*row) if row else None

    def update(self, batch_id: str, **fields: Any) -> None:
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            self._db.execute(f"UPDATE batches SET {columns} WHERE id = ?", (*fields.values(), batch_id))

    def count_line(self, batch_id: str, ok: bool) -> None:
        column = "completed" if ok else "failed"
        with self._lock:
            self._db.execute(f"UPDATE batches SET {column} = {column} + 1 WHERE id = ?", (batch_id,))

    def register_output(self, batch: BatchRecord) -> None:
        path = self.path_of(batch.output_file_id)
        size = path.stat().st_size if path.exists() else 0
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, 'batch_output', ?, ?)",
                (batch.output_file_id, f"{batch.id}_output.jsonl", size, int(time.time())),
            )


class BatchRunner:
    """Runs batches one after another on the engine, behind real-time traffic, resuming after restarts."""

    def __init__(self, store: BatchStore, services: Services, max_in_flight: int) -> None:
        self.store = store
        self.services = services
        self.max_in_flight = max_in_flight
        self._wake = asyncio.Event()
        self._loop: asyncio.Task | None = None
        self._current: tuple[str, asyncio.Task] | None = None

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run_forever())

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._current:
            self._current[1].cancel()
        if self._loop:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop

    async def cancel(self, batch_id: str) -> None:
        batch = self.store.get_batch(batch_id)
        if batch is None or batch.status not in ACTIVE:
            return
        if self._current and self._current[0] == batch_id:
            self.store.update(batch_id, status="cancelling")
            self._current[1].cancel()
        else:
            self.store.update(batch_id, status="cancelled", cancelled_at=int(time.time()))

    async def _run_forever(self) -> None:
        while True:
            batch = self.store.next_active()
            if batch is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                self._wake.clear()
                continue
            task = asyncio.create_task(self._run(batch))
            self._current = (batch.id, task)
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._current = None

    async def _run(self, batch: BatchRecord) -> None:
        source = self.store.path_of(batch.input_file_id)
        total = await asyncio.to_thread(lambda: sum(1 for _ in read_lines(source)))
        started = batch.in_progress_at or int(time.time())
        self.store.update(batch.id, status="in_progress", in_progress_at=started, total=total)
        output = self.store.path_of(batch.output_file_id)
        try:
            report = await run_batch(
                self.services,
                source,
                output,
                self.max_in_flight,
                progress=False,
                endpoint=batch.endpoint,
                gate=lambda: realtime_waiting() == 0,
                on_line=lambda ok: self._count(batch.id, ok),
                total=total,
            )
            log.info("batch %s: %s", batch.id, report.summary())
            self.store.register_output(batch)
            self.store.update(batch.id, status="completed", completed_at=int(time.time()))
        except asyncio.CancelledError:
            current = self.store.get_batch(batch.id)
            if current is not None and current.status == "cancelling":
                self.store.register_output(batch)
                self.store.update(batch.id, status="cancelled", cancelled_at=int(time.time()))
            raise
        except Exception as exc:
            log.exception("batch %s failed", batch.id)
            self.store.update(batch.id, status="failed", failed_at=int(time.time()), error=type(exc).__name__)

    def _count(self, batch_id: str, ok: bool) -> None:
        self.store.count_line(batch_id, ok)
