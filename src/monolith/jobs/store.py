"""Async jobs in SQLite (WAL): the only state that must survive a crash of the server."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from monolith.errors import Conflict

TERMINAL = ("succeeded", "failed", "cancelled")
STATUSES = ("queued", "running", *TERMINAL)

_SCHEMA = """
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
"""


@dataclass(frozen=True)
class Job:
    seq: int
    id: str
    kind: str
    status: str
    request: bytes
    result: bytes | None
    error: bytes | None
    callback_url: str | None
    callback_state: str | None
    callback_attempts: int
    runs: int
    created_at: float
    started_at: float | None
    finished_at: float | None

    def to_wire(self, status_url: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "job",
            "kind": self.kind,
            "status": self.status,
            "status_url": status_url,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "result": msgspec.json.decode(self.result) if self.result else None,
            "error": msgspec.json.decode(self.error) if self.error else None,
        }
        if self.callback_url:
            body["callback"] = {
                "url": self.callback_url,
                "state": self.callback_state,
                "attempts": self.callback_attempts,
            }
        return body


_COLUMNS = (
    "seq, id, kind, status, request, result, error, callback_url, callback_state, callback_attempts, runs, "
    "created_at, started_at, finished_at"
)


class JobStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # WAL + NORMAL: a commit survives the process being killed (not a power cut), without an fsync each.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _one(self, where: str, *args: Any) -> Job | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE {where}", args).fetchone()
        return Job(*row) if row else None

    def get(self, job_id: str) -> Job | None:
        return self._one("id = ?", job_id)

    def submit(
        self, kind: str, request: bytes, callback_url: str | None, idempotency_key: str | None
    ) -> tuple[Job, bool]:
        """Returns (job, created). A repeated Idempotency-Key returns the first job, if the body matches."""
        digest = hashlib.sha256(kind.encode() + b"\0" + request).hexdigest()
        if idempotency_key:
            existing = self._one("idempotency_key = ?", idempotency_key)
            if existing is not None:
                with self._lock:
                    (stored_hash,) = self._db.execute(
                        "SELECT request_hash FROM jobs WHERE id = ?", (existing.id,)
                    ).fetchone()
                if stored_hash != digest:
                    raise Conflict("this Idempotency-Key was used with a different request", param="Idempotency-Key")
                return existing, False
        job_id = f"job-{uuid.uuid4().hex}"
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, kind, status, request, request_hash, idempotency_key, callback_url, created_at)"
                " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                (job_id, kind, request, digest, idempotency_key, callback_url, time.time()),
            )
        job = self.get(job_id)
        assert job is not None
        return job, True

    def claim_next(self) -> Job | None:
        """The oldest queued job, atomically marked running."""
        with self._lock:
            row = self._db.execute(
                "UPDATE jobs SET status = 'running', started_at = ?, runs = runs + 1 "
                "WHERE seq = (SELECT seq FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1) "
                f"RETURNING {_COLUMNS}",
                (time.time(),),
            ).fetchone()
        return Job(*row) if row else None

    def finish(self, job_id: str, status: str, result: bytes | None = None, error: bytes | None = None) -> bool:
        """Record the outcome once; a job already terminal (cancelled meanwhile) keeps its first outcome."""
        assert status in TERMINAL
        with self._lock:
            cursor = self._db.execute(
                "UPDATE jobs SET status = ?, result = ?, error = ?, finished_at = ?, "
                "callback_state = CASE WHEN callback_url IS NULL THEN NULL ELSE 'pending' END, callback_next_at = ? "
                "WHERE id = ? AND status IN ('queued', 'running')",
                (status, result, error, time.time(), time.time(), job_id),
            )
        return cursor.rowcount == 1

    def requeue_running(self) -> int:
        """After a crash or shutdown, jobs that were running run again from the start (no result was stored)."""
        with self._lock:
            return self._db.execute(
                "UPDATE jobs SET status = 'queued', started_at = NULL WHERE status = 'running'"
            ).rowcount

    def requeue(self, job_id: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = 'queued', started_at = NULL WHERE id = ? AND status = 'running'", (job_id,)
            )

    def list(self, status: str | None, limit: int, after: str | None) -> tuple[list[Job], bool]:
        clauses, args = [], []
        if status:
            clauses.append("status = ?")
            args.append(status)
        if after:
            clauses.append("seq > COALESCE((SELECT seq FROM jobs WHERE id = ?), 0)")
            args.append(after)
        where = " AND ".join(clauses) or "1"
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE {where} ORDER BY seq LIMIT ?", (*args, limit + 1)
            ).fetchall()
        return [Job(*r) for r in rows[:limit]], len(rows) > limit

    def backlog(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')").fetchone()[0]

    def due_callbacks(self, now: float, limit: int = 16) -> list[Job]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE callback_state = 'pending' AND callback_next_at <= ? "
                "ORDER BY callback_next_at LIMIT ?",
                (now, limit),
            ).fetchall()
        return [Job(*r) for r in rows]

    def callback_result(self, job_id: str, delivered: bool, next_at: float | None, give_up: bool) -> None:
        state = "delivered" if delivered else ("failed" if give_up else "pending")
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET callback_state = ?, callback_attempts = callback_attempts + 1, callback_next_at = ? "
                "WHERE id = ?",
                (state, next_at, job_id),
            )

    def purge(self, older_than: float) -> int:
        """Finished jobs past their retention, except those with a callback still to deliver."""
        with self._lock:
            return self._db.execute(
                "DELETE FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < ? "
                "AND COALESCE(callback_state, '') != 'pending'",
                (older_than,),
            ).rowcount
