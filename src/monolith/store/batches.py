"""Files and HTTP batches, shared by every replica. A file's record lives in the database and its content in
`files_dir`, which all replicas mount; a batch is run by the replica holding its lease."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select, update

from monolith.store.database import Database, epoch_now
from monolith.store.files import write_atomically
from monolith.store.tables import batches, files

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
    runs: int

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


FILE_COLUMNS = [files.c.id, files.c.filename, files.c.purpose, files.c.bytes, files.c.created_at]
BATCH_COLUMNS = [
    batches.c.id,
    batches.c.endpoint,
    batches.c.input_file_id,
    batches.c.output_file_id,
    batches.c.completion_window,
    batches.c.status,
    batches.c.metadata,
    batches.c.total,
    batches.c.completed,
    batches.c.failed,
    batches.c.created_at,
    batches.c.in_progress_at,
    batches.c.completed_at,
    batches.c.cancelled_at,
    batches.c.failed_at,
    batches.c.error,
    batches.c.runs,
]


class BatchStore:
    def __init__(self, db: Database, files_dir: Path, replica: str, lease_s: float, max_runs: int) -> None:
        files_dir.mkdir(parents=True, exist_ok=True)
        self.db = db
        self.files_dir = files_dir
        self.replica = replica
        self.lease_s = lease_s
        self.max_runs = max_runs

    def path_of(self, file_id: str) -> Path:
        return self.files_dir / f"{file_id}.jsonl"

    async def add_file(self, filename: str, purpose: str, content: bytes) -> FileRecord:
        record = FileRecord(f"file-{uuid.uuid4().hex}", filename, purpose, len(content), int(time.time()))
        await asyncio.to_thread(write_atomically, self.path_of(record.id), content)
        async with self.db.begin() as conn:
            await conn.execute(files.insert().values(**record.__dict__))
        return record

    async def get_file(self, file_id: str) -> FileRecord | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(*FILE_COLUMNS).where(files.c.id == file_id))).first()
        return FileRecord(*row) if row else None

    async def create_batch(self, endpoint: str, input_file_id: str, window: str, metadata: str | None) -> BatchRecord:
        batch_id, output = f"batch_{uuid.uuid4().hex}", f"file-{uuid.uuid4().hex}"
        async with self.db.begin() as conn:
            await conn.execute(
                batches.insert().values(
                    id=batch_id,
                    endpoint=endpoint,
                    input_file_id=input_file_id,
                    output_file_id=output,
                    completion_window=window,
                    status="validating",
                    metadata=metadata,
                    created_at=int(time.time()),
                )
            )
        batch = await self.get_batch(batch_id)
        assert batch is not None
        return batch

    async def get_batch(self, batch_id: str) -> BatchRecord | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(*BATCH_COLUMNS).where(batches.c.id == batch_id))).first()
        return BatchRecord(*row) if row else None

    async def list_batches(self, limit: int, after: str | None) -> tuple[list[BatchRecord], bool]:
        after_seq = select(batches.c.seq).where(batches.c.id == after).scalar_subquery()
        query = select(*BATCH_COLUMNS).where(batches.c.seq > func.coalesce(after_seq, 0))
        async with self.db.read() as conn:
            rows = (await conn.execute(query.order_by(batches.c.seq).limit(limit + 1))).all()
        return [BatchRecord(*r) for r in rows[:limit]], len(rows) > limit

    async def claim_next(self) -> BatchRecord | None:
        """The oldest active batch that no live replica holds, now leased to this one. A batch whose
        runner died max_runs times is failed instead."""
        now = epoch_now()
        free = or_(batches.c.lease_owner.is_(None), batches.c.lease_expires_at < now)
        async with self.db.begin() as conn:
            await conn.execute(
                update(batches)
                .where(batches.c.status.in_(ACTIVE), free, batches.c.runs >= self.max_runs)
                .values(
                    status="failed",
                    failed_at=int(time.time()),
                    error=f"the batch's runner stopped {self.max_runs} times before it finished (jobs.max_runs)",
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
            candidate = (
                select(batches.c.seq)
                .where(batches.c.status.in_(ACTIVE), free)
                .order_by(batches.c.seq)
                .limit(1)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            row = (
                await conn.execute(
                    update(batches)
                    .where(batches.c.seq == candidate)
                    .values(runs=batches.c.runs + 1, lease_owner=self.replica, lease_expires_at=now + self.lease_s)
                    .returning(*BATCH_COLUMNS)
                )
            ).first()
        return BatchRecord(*row) if row else None

    async def renew(self, batch_id: str) -> str | None:
        """Extends this replica's lease; the batch's status (`cancelling` when a replica asked), or None
        when this replica no longer holds it."""
        async with self.db.begin() as conn:
            row = (
                await conn.execute(
                    update(batches)
                    .where(batches.c.id == batch_id, batches.c.lease_owner == self.replica)
                    .values(lease_expires_at=epoch_now() + self.lease_s)
                    .returning(batches.c.status)
                )
            ).first()
        return row.status if row else None

    async def update_held(self, batch_id: str, **fields: Any) -> bool:
        """Changes a batch this replica holds; False when it no longer does (nothing written)."""
        async with self.db.begin() as conn:
            updated = await conn.execute(
                update(batches).where(batches.c.id == batch_id, batches.c.lease_owner == self.replica).values(**fields)
            )
        return updated.rowcount == 1

    async def finish_held(self, batch_id: str, status: str, **fields: Any) -> bool:
        """A final status for a batch this replica holds, and its lease let go."""
        return await self.update_held(batch_id, status=status, lease_owner=None, lease_expires_at=None, **fields)

    async def count_line(self, batch_id: str, ok: bool) -> None:
        column = batches.c.completed if ok else batches.c.failed
        async with self.db.begin() as conn:
            await conn.execute(update(batches).where(batches.c.id == batch_id).values({column: column + 1}))

    async def release(self, batch_id: str) -> None:
        """A clean shutdown lets another replica (or the next start) resume the batch at once."""
        await self.update_held(batch_id, lease_owner=None, lease_expires_at=None, runs=batches.c.runs - 1)

    async def cancel(self, batch_id: str) -> None:
        """From any replica: a batch nobody runs is cancelled here; one a live replica runs is marked
        `cancelling`, which its runner sees at its next heartbeat."""
        now = epoch_now()
        free = or_(batches.c.lease_owner.is_(None), batches.c.lease_expires_at < now)
        async with self.db.begin() as conn:
            done = await conn.execute(
                update(batches)
                .where(batches.c.id == batch_id, batches.c.status.in_(ACTIVE), free)
                .values(status="cancelled", cancelled_at=int(time.time()), lease_owner=None, lease_expires_at=None)
            )
            if done.rowcount == 0:
                await conn.execute(
                    update(batches)
                    .where(batches.c.id == batch_id, batches.c.status.in_(("validating", "in_progress")))
                    .values(status="cancelling")
                )

    async def register_output(self, batch: BatchRecord) -> None:
        """The output file's record (its content was appended while the batch ran)."""
        path = self.path_of(batch.output_file_id)
        size = path.stat().st_size if path.exists() else 0
        record = {
            "id": batch.output_file_id,
            "filename": f"{batch.id}_output.jsonl",
            "purpose": "batch_output",
            "bytes": size,
            "created_at": int(time.time()),
        }
        statement = self.db.insert(files).values(**record)
        statement = statement.on_conflict_do_update(index_elements=[files.c.id], set_={"bytes": size})
        async with self.db.begin() as conn:
            await conn.execute(statement)
