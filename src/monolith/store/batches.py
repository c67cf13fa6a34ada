"""HTTP batches, shared by every replica: batches over uploaded files (store.files), their lines split into shards
that any replica claims under a lease (taken round-robin over owners, then batches), resumed by another replica when
the one running a shard dies. A batch ends (its output assembled) under the batch's own lease, by whichever
replica finds it ready: every shard done, cancelled with none running, or past its completion window."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import and_, case, exists, func, insert, or_, select, update

from monolith.store.database import Database, epoch_now, oldest_unlocked
from monolith.store.files import ACTIVE, FileStore, new_file_id
from monolith.store.tables import batch_shards, batches

# A batch in one of these states has shards to run (`cancelling` has shards still stopping).
RUNNABLE = ("validating", "in_progress")
COMPLETION_WINDOWS_S = {"24h": 86400}


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
    expires_at: int | None = None
    expired_at: int | None = None
    error_file_id: str | None = None


def _shard_sum(column: Any) -> Any:
    return select(func.coalesce(func.sum(column), 0)).where(batch_shards.c.batch_id == batches.c.id).scalar_subquery()


def _counted(column: Any, shard_column: Any) -> Any:
    """A running batch's counts are the sum over its shards (any replica's lines); an ended one's are its own."""
    return case((batches.c.status.in_(ACTIVE), _shard_sum(shard_column)), else_=column).label(column.name)


BATCH_COLUMNS = [
    batches.c.id,
    batches.c.endpoint,
    batches.c.input_file_id,
    batches.c.output_file_id,
    batches.c.completion_window,
    batches.c.status,
    batches.c.metadata,
    batches.c.total,
    _counted(batches.c.completed, batch_shards.c.completed),
    _counted(batches.c.failed, batch_shards.c.failed),
    batches.c.created_at,
    batches.c.in_progress_at,
    batches.c.completed_at,
    batches.c.cancelled_at,
    batches.c.failed_at,
    batches.c.error,
    batches.c.runs,
    batches.c.owner,
    batches.c.traceparent,
    batches.c.expires_at,
    batches.c.expired_at,
    batches.c.error_file_id,
]


@dataclass(frozen=True)
class ShardPlan:
    """A run of a batch file's request lines: its bytes [start_byte, end_byte) (None: to the end of the file),
    the file's line number at start_byte, and how many request lines it holds."""

    start_byte: int
    end_byte: int | None
    first_line: int
    lines: int


@dataclass(frozen=True)
class ShardRecord:
    """A shard as its runner needs it: its place in the input, and its batch's."""

    seq: int
    batch_id: str
    idx: int
    plan: ShardPlan
    runs: int
    endpoint: str
    input_file_id: str
    output_file_id: str
    created_at: int
    traceparent: str | None


SHARD_COLUMNS = [
    batch_shards.c.seq,
    batch_shards.c.batch_id,
    batch_shards.c.idx,
    batch_shards.c.start_byte,
    batch_shards.c.end_byte,
    batch_shards.c.first_line,
    batch_shards.c.lines,
    batch_shards.c.runs,
    batches.c.endpoint,
    batches.c.input_file_id,
    batches.c.output_file_id,
    batches.c.created_at,
    batches.c.traceparent,
]


def _shard(row: Any) -> ShardRecord:
    seq, batch_id, idx, start, end, first, lines, runs, *batch = row
    return ShardRecord(seq, batch_id, idx, ShardPlan(start, end, first, lines), runs, *batch)


def _free(table: Any, now: Any) -> Any:
    return or_(table.c.lease_owner.is_(None), table.c.lease_expires_at < now)


def _live_shard(now: Any) -> Any:
    """Some shard of the batch is held by a replica whose lease has not run out."""
    return exists().where(
        batch_shards.c.batch_id == batches.c.id,
        batch_shards.c.lease_owner.is_not(None),
        batch_shards.c.lease_expires_at >= now,
    )


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

    def part_of(self, batch_id: str, idx: int) -> Path:
        """A shard's answers, appended as its lines finish; the batch's output is assembled from the parts."""
        return self.files.parts_dir / f"{batch_id}.{idx:06d}.jsonl"

    async def create_batch(
        self,
        endpoint: str,
        input_file_id: str,
        window: str,
        metadata: str | None,
        owner: str = "",
        traceparent: str | None = None,
        shards: list[ShardPlan] | None = None,
    ) -> BatchRecord:
        """A batch and its shards, in one transaction: every replica sees both or neither."""
        batch_id, output, now = f"batch_{uuid.uuid4().hex}", new_file_id(), int(time.time())
        plans = shards or []
        async with self.db.begin() as conn:
            await conn.execute(
                batches.insert().values(
                    id=batch_id,
                    endpoint=endpoint,
                    input_file_id=input_file_id,
                    output_file_id=output,
                    error_file_id=new_file_id(),
                    completion_window=window,
                    status="validating",
                    metadata=metadata,
                    total=sum(p.lines for p in plans),
                    created_at=now,
                    expires_at=now + COMPLETION_WINDOWS_S[window],
                    owner=owner,
                    traceparent=traceparent,
                )
            )
            if plans:
                rows = [
                    {"batch_id": batch_id, "idx": i, "status": "queued", **plan.__dict__}
                    for i, plan in enumerate(plans)
                ]
                await conn.execute(insert(batch_shards), rows)
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

    async def claim_shard(self) -> ShardRecord | None:
        """A shard no live replica holds, now leased to this one: the owner whose batches were served longest
        ago first, then that owner's batch served longest ago (round-robin, not first come first served), then its
        first shard. A shard whose runner died max_runs times fails its batch instead."""
        now = epoch_now()
        free, queued = _free(batch_shards, now), batch_shards.c.status == "queued"
        exhausted = and_(free, queued, batch_shards.c.runs >= self.max_runs)
        others = batches.alias("others")
        owner_turn = select(func.max(others.c.claimed_at)).where(others.c.owner == batches.c.owner).scalar_subquery()
        candidate = (
            select(batch_shards.c.seq)
            .join(batches, batches.c.id == batch_shards.c.batch_id)
            .where(batches.c.status.in_(RUNNABLE), batches.c.expires_at >= now, free, queued)
            .order_by(
                func.coalesce(owner_turn, 0),
                func.coalesce(batches.c.claimed_at, 0),
                batches.c.seq,
                batch_shards.c.idx,
            )
            .limit(1)
            .with_for_update(of=batch_shards, skip_locked=True)
        )
        async with self.db.begin() as conn:
            failing = select(batch_shards.c.batch_id).where(exhausted)
            error = f"a shard's runner stopped {self.max_runs} times before it finished (store.max_runs)"
            await conn.execute(
                update(batches)
                .where(batches.c.id.in_(failing), batches.c.status.in_(ACTIVE))
                .values(status="failed", failed_at=int(time.time()), error=error)
            )
            await conn.execute(
                update(batch_shards).where(exhausted).values(status="failed", lease_owner=None, lease_expires_at=None)
            )
            claimed = (
                await conn.execute(
                    update(batch_shards)
                    .where(batch_shards.c.seq.in_(candidate))
                    .values(runs=batch_shards.c.runs + 1, lease_owner=self.replica, lease_expires_at=now + self.lease_s)
                    .returning(batch_shards.c.seq, batch_shards.c.batch_id)
                )
            ).first()
            if claimed is None:
                return None
            started = case((batches.c.status == "validating", "in_progress"), else_=batches.c.status)
            await conn.execute(
                update(batches)
                .where(batches.c.id == claimed.batch_id)
                .values(
                    claimed_at=now,
                    status=started,
                    in_progress_at=func.coalesce(batches.c.in_progress_at, int(time.time())),
                )
            )
            query = select(*SHARD_COLUMNS).join(batches, batches.c.id == batch_shards.c.batch_id)
            row = (await conn.execute(query.where(batch_shards.c.seq == claimed.seq))).one()
        return _shard(row)

    async def renew_shards(self, seqs: list[int]) -> dict[int, str | None]:
        """Extends this replica's leases on these shards: for each it still holds, None to go on, or why it must
        stop (its batch `cancelling`, `expired`, or ended otherwise). A shard missing was taken over."""
        if not seqs:
            return {}
        now = epoch_now()
        why = case(
            (batches.c.status.not_in(RUNNABLE), batches.c.status),
            (batches.c.expires_at < now, "expired"),
            else_=None,
        )
        async with self.db.begin() as conn:
            held = (
                await conn.execute(
                    update(batch_shards)
                    .where(batch_shards.c.seq.in_(seqs), batch_shards.c.lease_owner == self.replica)
                    .values(lease_expires_at=now + self.lease_s)
                    .returning(batch_shards.c.seq)
                )
            ).all()
            query = (
                select(batch_shards.c.seq, why)
                .join(batches, batches.c.id == batch_shards.c.batch_id)
                .where(batch_shards.c.seq.in_([r.seq for r in held]))
            )
            rows = (await conn.execute(query)).all()
        return {seq: reason for seq, reason in rows}

    async def _update_shard(self, seq: int, **fields: Any) -> bool:
        """Changes a shard this replica holds; False when it no longer does (nothing written)."""
        async with self.db.begin() as conn:
            updated = await conn.execute(
                update(batch_shards)
                .where(batch_shards.c.seq == seq, batch_shards.c.lease_owner == self.replica)
                .values(**fields)
            )
        return updated.rowcount == 1

    async def start_shard(self, seq: int, completed: int, failed: int, lines: int | None = None) -> bool:
        """A shard's counts as its part file has them when its run starts (a takeover: what the dead runner
        wrote); `lines` for a shard that runs to the end of its file, counted now."""
        fields: dict[str, Any] = {"completed": completed, "failed": failed}
        if lines is not None:
            fields["lines"] = lines
        return await self._update_shard(seq, **fields)

    async def count_lines(self, seq: int, completed: int, failed: int) -> None:
        """Adds lines answered since the last count to the progress of a shard this replica holds (once taken over,
        its counts start again from its part: a late write from the runner that lost it would add to them)."""
        values = {
            batch_shards.c.completed: batch_shards.c.completed + completed,
            batch_shards.c.failed: batch_shards.c.failed + failed,
        }
        mine = and_(batch_shards.c.seq == seq, batch_shards.c.lease_owner == self.replica)
        async with self.db.begin() as conn:
            await conn.execute(update(batch_shards).where(mine).values(values))

    async def finish_shard(self, seq: int, completed: int, failed: int) -> bool:
        """Every line of the shard answered; its lease let go."""
        return await self._update_shard(
            seq, status="completed", completed=completed, failed=failed, lease_owner=None, lease_expires_at=None
        )

    async def let_go(self, seq: int) -> None:
        """The shard stopped because its batch did (a cancel, its window): the batch can end without waiting
        for this lease to run out."""
        await self._update_shard(seq, lease_owner=None, lease_expires_at=None)

    async def release(self, seq: int) -> None:
        """A clean shutdown (or an outage) hands the shard back: another replica resumes it at once, and this run
        does not count toward max_runs."""
        await self._update_shard(seq, lease_owner=None, lease_expires_at=None, runs=batch_shards.c.runs - 1)

    async def fail_batch(self, batch_id: str, error: str) -> None:
        """A shard met an error that is not an outage: the batch fails, and its other shards stop at their next
        heartbeat."""
        async with self.db.begin() as conn:
            await conn.execute(
                update(batches)
                .where(batches.c.id == batch_id, batches.c.status.in_(ACTIVE))
                .values(status="failed", failed_at=int(time.time()), error=error)
            )

    async def claim_ending(self) -> tuple[BatchRecord, str] | None:
        """A batch ready to end, now leased to this replica to assemble its output, and how it ends: `completed`
        (every shard done), `cancelled` (cancelling, no shard running), `expired` (past its window, no shard
        running). Another replica takes it over if this one dies assembling it."""
        now = epoch_now()
        running, unfinished = (
            _live_shard(now),
            exists().where(batch_shards.c.batch_id == batches.c.id, batch_shards.c.status != "completed"),
        )
        runnable = batches.c.status.in_(RUNNABLE)
        ending = case(
            (batches.c.status == "cancelling", "cancelled"),
            (~unfinished, "completed"),
            else_="expired",
        )
        ready = or_(
            and_(batches.c.status == "cancelling", ~running),
            and_(runnable, ~unfinished),
            and_(runnable, batches.c.expires_at < now, ~running),
        )
        candidate = oldest_unlocked(batches, ready, _free(batches, now))
        async with self.db.begin() as conn:
            row = (
                await conn.execute(
                    update(batches)
                    .where(batches.c.seq.in_(candidate))
                    .values(lease_owner=self.replica, lease_expires_at=now + self.lease_s)
                    .returning(batches.c.id)
                )
            ).first()
            if row is None:
                return None
            end = (await conn.execute(select(ending).where(batches.c.id == row.id))).scalar_one()
        batch = await self.get_batch(row.id)
        assert batch is not None
        return batch, end

    async def hold_batch(self, batch_id: str) -> bool:
        """Extends this replica's lease on a batch it is ending; False when it no longer holds it."""
        async with self.db.begin() as conn:
            held = await conn.execute(
                update(batches)
                .where(batches.c.id == batch_id, batches.c.lease_owner == self.replica)
                .values(lease_expires_at=epoch_now() + self.lease_s)
            )
        return held.rowcount == 1

    async def shards_of(self, batch_id: str) -> list[tuple[int, ShardPlan]]:
        """(idx, plan) of each shard of a batch, in input order."""
        query = (
            select(
                batch_shards.c.idx,
                batch_shards.c.start_byte,
                batch_shards.c.end_byte,
                batch_shards.c.first_line,
                batch_shards.c.lines,
            )
            .where(batch_shards.c.batch_id == batch_id)
            .order_by(batch_shards.c.idx)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [(idx, ShardPlan(*plan)) for idx, *plan in rows]

    async def finish_held(self, batch_id: str, status: str, **fields: Any) -> bool:
        """A final status for a batch this replica holds, and its lease let go."""
        async with self.db.begin() as conn:
            updated = await conn.execute(
                update(batches)
                .where(batches.c.id == batch_id, batches.c.lease_owner == self.replica)
                .values(status=status, lease_owner=None, lease_expires_at=None, **fields)
            )
        return updated.rowcount == 1

    async def cancel(self, batch_id: str) -> None:
        """From any replica: a batch no shard of which ever started is cancelled here; another is marked
        `cancelling`, which the replicas running its shards see at their next heartbeat, and it ends (with the
        lines answered so far) once none runs."""
        started = exists().where(batch_shards.c.batch_id == batches.c.id, batch_shards.c.runs > 0)
        async with self.db.begin() as conn:
            done = await conn.execute(
                update(batches)
                .where(batches.c.id == batch_id, batches.c.status.in_(RUNNABLE), ~started)
                .values(status="cancelled", cancelled_at=int(time.time()))
            )
            if done.rowcount == 0:
                await conn.execute(
                    update(batches)
                    .where(batches.c.id == batch_id, batches.c.status.in_(RUNNABLE))
                    .values(status="cancelling")
                )

    async def lines_waiting(self) -> int:
        """Request lines not answered yet over every batch that may still run them: the batch backlog."""
        left = batch_shards.c.lines - batch_shards.c.completed - batch_shards.c.failed
        query = (
            select(func.coalesce(func.sum(left), 0))
            .join(batches, batches.c.id == batch_shards.c.batch_id)
            .where(batches.c.status.in_(RUNNABLE), batch_shards.c.status == "queued")
        )
        async with self.db.read() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def register_output(self, batch: BatchRecord, error_file_id: str | None = None) -> None:
        """The output file's record (its content was assembled from the shards' parts), and the error file's when
        any line failed."""
        await self.files.register_output(batch.output_file_id, f"{batch.id}_output.jsonl", batch.owner)
        if error_file_id is not None:
            await self.files.register_output(error_file_id, f"{batch.id}_error.jsonl", batch.owner)
