"""HTTP batches, shared by every replica: the queue of batches over uploaded files (store.files), each run by the
replica holding its lease, resumed by another when that replica dies."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select, update

from monolith.store.database import Database, epoch_now, oldest_unlocked
from monolith.store.files import ACTIVE, FileStore, new_file_id
from monolith.store.tables import batches


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
    owner: str
    traceparent: str | None = None  # the create request's trace context (monolith.tracing)


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
    batches.c.owner,
    batches.c.traceparent,
]


def _owned(table: Any, owner: str | None) -> list[Any]:
    """None: any owner (the runners); a string: only what that caller made."""
    return [] if owner is None else [table.c.owner == owner]


class BatchStore:
    def __init__(self, db: Database, files: FileStore, replica: str, lease_s: float, max_runs: int) -> None:
        self.db = db
        self.files = files
        self.replica = replica
        self.lease_s = lease_s
        self.max_runs = max_runs

    def path_of(self, file_id: str) -> Path:
        return self.files.path_of(file_id)

    async def create_batch(
        self,
        endpoint: str,
        input_file_id: str,
        window: str,
        metadata: str | None,
        owner: str = "",
        traceparent: str | None = None,
    ) -> BatchRecord:
        batch_id, output = f"batch_{uuid.uuid4().hex}", new_file_id()
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
                    owner=owner,
                    traceparent=traceparent,
                )
            )
        batch = await self.get_batch(batch_id)
        assert batch is not None
        return batch

    async def get_batch(self, batch_id: str, owner: str | None = None) -> BatchRecord | None:
        query = select(*BATCH_COLUMNS).where(batches.c.id == batch_id, *_owned(batches, owner))
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return BatchRecord(*row) if row else None

    async def list_batches(
        self, limit: int, after: str | None, owner: str | None = None
    ) -> tuple[list[BatchRecord], bool]:
        after_seq = select(batches.c.seq).where(batches.c.id == after).scalar_subquery()
        query = select(*BATCH_COLUMNS).where(batches.c.seq > func.coalesce(after_seq, 0), *_owned(batches, owner))
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
                    error=f"the batch's runner stopped {self.max_runs} times before it finished (store.max_runs)",
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
            candidate = oldest_unlocked(batches, batches.c.status.in_(ACTIVE), free)
            row = (
                await conn.execute(
                    update(batches)
                    .where(batches.c.seq.in_(candidate))
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

    async def count_lines(self, batch_id: str, completed: int, failed: int) -> None:
        """Adds lines answered since the last count to a batch's progress."""
        values = {batches.c.completed: batches.c.completed + completed, batches.c.failed: batches.c.failed + failed}
        async with self.db.begin() as conn:
            await conn.execute(update(batches).where(batches.c.id == batch_id).values(values))

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
        await self.files.register_output(batch.output_file_id, f"{batch.id}_output.jsonl", batch.owner)
