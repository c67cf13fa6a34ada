"""Files and HTTP batches, shared by every replica. A file's record lives in the database and its content in
`files_dir`, which all replicas mount; a batch is run by the replica holding its lease."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import and_, func, or_, select, update

from monolith.errors import Conflict
from monolith.store.database import Database, epoch_now, oldest_unlocked
from monolith.store.files import copy_lines_atomically
from monolith.store.tables import batches, files

ACTIVE = ("validating", "in_progress", "cancelling")


@dataclass(frozen=True)
class FileRecord:
    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    owner: str = ""

    def to_wire(self, ttl_s: float) -> dict[str, Any]:
        return {
            "object": "file",
            "status": "processed",
            "id": self.id,
            "filename": self.filename,
            "purpose": self.purpose,
            "bytes": self.bytes,
            "created_at": self.created_at,
            "expires_at": self.created_at + int(ttl_s),
        }


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


FILE_COLUMNS = [files.c.id, files.c.filename, files.c.purpose, files.c.bytes, files.c.created_at, files.c.owner]
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
]


def new_file_id() -> str:
    """Time first, then random: ids sort in creation order (files are listed newest first)."""
    return f"file-{time.time_ns():016x}{secrets.token_hex(8)}"


def _owned(table: Any, owner: str | None) -> list[Any]:
    """None: any owner (the runners); a string: only what that caller made."""
    return [] if owner is None else [table.c.owner == owner]


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

    async def add_file_from(
        self,
        source: BinaryIO,
        filename: str,
        purpose: str,
        owner: str,
        check: Callable[[int, bytes], None],
        max_lines: int,
        max_line_bytes: int,
    ) -> FileRecord:
        """An upload, checked line by line while it is copied into place (never whole in memory)."""
        file_id = new_file_id()
        path = self.path_of(file_id)
        size, _ = await asyncio.to_thread(copy_lines_atomically, source, path, check, max_lines, max_line_bytes)
        record = FileRecord(file_id, filename, purpose, size, int(time.time()), owner)
        try:
            async with self.db.begin() as conn:
                await conn.execute(files.insert().values(**record.__dict__))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return record

    async def get_file(self, file_id: str, owner: str | None = None) -> FileRecord | None:
        query = select(*FILE_COLUMNS).where(files.c.id == file_id, *_owned(files, owner))
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return FileRecord(*row) if row else None

    async def list_files(
        self, owner: str, purpose: str | None, limit: int, after: str | None
    ) -> tuple[list[FileRecord], bool]:
        """Newest first, as OpenAI lists them; `after` is the last id of the previous page."""
        query = select(*FILE_COLUMNS).where(files.c.owner == owner)
        if purpose:
            query = query.where(files.c.purpose == purpose)
        if after:
            cursor = select(files.c.created_at, files.c.id).where(files.c.id == after).subquery()
            query = query.where(
                or_(
                    files.c.created_at < select(cursor.c.created_at).scalar_subquery(),
                    and_(
                        files.c.created_at == select(cursor.c.created_at).scalar_subquery(),
                        files.c.id < after,
                    ),
                )
            )
        query = query.order_by(files.c.created_at.desc(), files.c.id.desc()).limit(limit + 1)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [FileRecord(*r) for r in rows[:limit]], len(rows) > limit

    async def usage(self, owner: str) -> tuple[int, int]:
        """(files, bytes) an owner stores."""
        query = select(func.count(), func.coalesce(func.sum(files.c.bytes), 0)).where(files.c.owner == owner)
        async with self.db.read() as conn:
            count, size = (await conn.execute(query)).one()
        return int(count), int(size)

    async def delete_file(self, file_id: str, owner: str) -> bool:
        """False when the owner has no such file; a 409 while an unfinished batch reads it."""
        async with self.db.begin() as conn:
            mine = select(files.c.id).where(files.c.id == file_id, files.c.owner == owner)
            if (await conn.execute(mine)).first() is None:
                return False
            in_use = select(batches.c.id).where(batches.c.input_file_id == file_id, batches.c.status.in_(ACTIVE))
            if (await conn.execute(in_use.limit(1))).first() is not None:
                message = f"file {file_id} is the input of a batch still running; cancel the batch first"
                raise Conflict(message, param="file_id")
            deleted = await conn.execute(files.delete().where(files.c.id == file_id, files.c.owner == owner))
        if deleted.rowcount == 1:
            self.path_of(file_id).unlink(missing_ok=True)
        return deleted.rowcount == 1

    async def expire_files(self, older_than: int) -> int:
        """Files past batch.file_ttl_s, except the input of a batch still running; their content goes too."""
        in_use = select(batches.c.input_file_id).where(batches.c.status.in_(ACTIVE))
        expired = files.delete().where(files.c.created_at < older_than, files.c.id.not_in(in_use))
        async with self.db.begin() as conn:
            ids = [r.id for r in await conn.execute(expired.returning(files.c.id))]
        for file_id in ids:
            self.path_of(file_id).unlink(missing_ok=True)
        return len(ids)

    async def create_batch(
        self, endpoint: str, input_file_id: str, window: str, metadata: str | None, owner: str = ""
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
                    error=f"the batch's runner stopped {self.max_runs} times before it finished (jobs.max_runs)",
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
            candidate = oldest_unlocked(batches, batches.c.status.in_(ACTIVE), free)
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
            "owner": batch.owner,
        }
        statement = self.db.insert(files).values(**record)
        statement = statement.on_conflict_do_update(index_elements=[files.c.id], set_={"bytes": size})
        async with self.db.begin() as conn:
            await conn.execute(statement)
