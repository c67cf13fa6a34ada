"""Async jobs, shared by every replica: claimed with a lease, renewed while they run, taken over when the
lease runs out (the runner died), failed after `max_runs` such runs. Results are written once."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal, get_args

import msgspec
from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from monolith.errors import Conflict, JobRunsExhausted
from monolith.protocol.errors import error_response
from monolith.store.database import Database, epoch_now, oldest_unlocked
from monolith.store.tables import jobs

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL = ("succeeded", "failed", "cancelled")
STATUSES: tuple[str, ...] = get_args(JobStatus)
UNFINISHED = ("queued", "running")


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
    traceparent: str | None = None  # the submit's trace context (monolith.tracing)


COLUMNS = [
    jobs.c.seq,
    jobs.c.id,
    jobs.c.kind,
    jobs.c.status,
    jobs.c.request,
    jobs.c.result,
    jobs.c.error,
    jobs.c.callback_url,
    jobs.c.callback_state,
    jobs.c.callback_attempts,
    jobs.c.runs,
    jobs.c.created_at,
    jobs.c.started_at,
    jobs.c.finished_at,
    jobs.c.traceparent,
]


def exhausted_error(runs: int) -> bytes:
    message = (
        f"the job was started {runs} times and its runner stopped each time (a crash, an out-of-memory kill or "
        "a lost node) before it finished; it is not started again (store.max_runs)"
    )
    return msgspec.json.encode(error_response(JobRunsExhausted(message)).error)


def request_digest(kind: str, request: bytes) -> str:
    return hashlib.sha256(kind.encode() + b"\0" + request).hexdigest()


class JobStore:
    """`replica` names this process in the leases it takes; `lease_s` is how long a lease lasts unrenewed."""

    def __init__(self, db: Database, replica: str, lease_s: float, max_runs: int) -> None:
        self.db = db
        self.replica = replica
        self.lease_s = lease_s
        self.max_runs = max_runs

    async def _one(self, *where: Any) -> Job | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(*COLUMNS).where(*where))).first()
        return Job(*row) if row else None

    async def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """`owner`: only if that caller submitted it (another owner's job does not exist for it)."""
        return await self._one(jobs.c.id == job_id, *_owned_by(owner))

    async def _by_key(self, owner: str, key: str, digest: str) -> Job | None:
        """The job this owner's Idempotency-Key made; a 409 when it was made from another request body."""
        query = select(jobs.c.request_hash, *COLUMNS).where(jobs.c.owner == owner, jobs.c.idempotency_key == key)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        if row[0] != digest:
            raise Conflict("this Idempotency-Key was used with a different request", param="Idempotency-Key")
        return Job(*row[1:])

    async def submit(
        self,
        kind: str,
        request: bytes,
        callback_url: str | None,
        idempotency_key: str | None,
        owner: str = "",
        traceparent: str | None = None,
    ) -> tuple[Job, bool]:
        """Returns (job, created). A repeated Idempotency-Key returns the first job, if the body matches;
        two replicas inserting the same key at once meet at the unique constraint, and one job wins."""
        digest = request_digest(kind, request)
        if idempotency_key and (existing := await self._by_key(owner, idempotency_key, digest)):
            return existing, False
        job_id = f"job-{uuid.uuid4().hex}"
        row = {
            "id": job_id,
            "kind": kind,
            "status": "queued",
            "request": request,
            "request_hash": digest,
            "idempotency_key": idempotency_key,
            "owner": owner,
            "callback_url": callback_url,
            "created_at": time.time(),
            "traceparent": traceparent,
        }
        try:
            async with self.db.begin() as conn:  # the new row back in the same round trip
                created = (await conn.execute(jobs.insert().values(**row).returning(*COLUMNS))).one()
        except IntegrityError:
            if not idempotency_key or (existing := await self._by_key(owner, idempotency_key, digest)) is None:
                raise
            return existing, False
        return Job(*created), True

    async def claim(self, limit: int) -> list[Job]:
        """Up to `limit` of the oldest queued jobs (or running ones whose lease ran out), now leased to this replica,
        oldest first: slots that free together are filled in one transaction, not one each."""
        now = epoch_now()
        lapsed = and_(jobs.c.status == "running", or_(jobs.c.lease_expires_at.is_(None), jobs.c.lease_expires_at < now))
        async with self.db.begin() as conn:
            # A job whose runner died max_runs times fails instead of killing the next one too.
            await conn.execute(
                update(jobs)
                .where(lapsed, jobs.c.runs >= self.max_runs)
                .values(
                    status="failed",
                    error=func.coalesce(jobs.c.error, exhausted_error(self.max_runs)),
                    lease_owner=None,
                    lease_expires_at=None,
                    **_finished_values(),
                )
            )
            due = and_(jobs.c.status == "queued", or_(jobs.c.not_before.is_(None), jobs.c.not_before <= now))
            candidates = oldest_unlocked(jobs, or_(due, lapsed), limit=limit)
            rows = (
                await conn.execute(
                    update(jobs)
                    .where(jobs.c.seq.in_(candidates))
                    .values(
                        status="running",
                        started_at=time.time(),
                        runs=jobs.c.runs + 1,
                        lease_owner=self.replica,
                        lease_expires_at=now + self.lease_s,
                    )
                    .returning(*COLUMNS)
                )
            ).all()
        return sorted((Job(*row) for row in rows), key=lambda job: job.seq)

    async def renew(self, job_ids: list[str]) -> set[str]:
        """Extends this replica's leases on these running jobs; returns the ids it still holds (a job
        missing from the answer was cancelled through another replica, or taken over)."""
        if not job_ids:
            return set()
        async with self.db.begin() as conn:
            rows = await conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(job_ids), jobs.c.status == "running", jobs.c.lease_owner == self.replica)
                .values(lease_expires_at=epoch_now() + self.lease_s)
                .returning(jobs.c.id)
            )
            return {r.id for r in rows}

    async def finish(
        self,
        job_id: str,
        status: str,
        result: bytes | None = None,
        error: bytes | None = None,
        held: bool = False,
        owner: str | None = None,
    ) -> bool:
        """Records the outcome once. `held`: only while this replica still holds the job's lease (a runner
        whose lease ran out must not overwrite the replica that took over). Cancelling needs no lease."""
        assert status in TERMINAL
        where = [jobs.c.id == job_id, jobs.c.status.in_(UNFINISHED), *_owned_by(owner)]
        if held:
            where += [jobs.c.status == "running", jobs.c.lease_owner == self.replica]
        async with self.db.begin() as conn:
            updated = await conn.execute(
                update(jobs)
                .where(*where)
                .values(
                    status=status,
                    result=result,
                    error=error,
                    lease_owner=None,
                    lease_expires_at=None,
                    **_finished_values(),
                )
            )
        return updated.rowcount == 1

    async def release(self, job_ids: list[str]) -> int:
        """Running jobs back to the queue at once, that run not counted: a clean shutdown, or a preemption."""
        if not job_ids:
            return 0
        async with self.db.begin() as conn:
            updated = await conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(job_ids), jobs.c.status == "running", jobs.c.lease_owner == self.replica)
                .values(status="queued", started_at=None, runs=jobs.c.runs - 1, lease_owner=None, lease_expires_at=None)
            )
        return updated.rowcount

    async def retry_later(self, job_id: str, delay_s: float, count_run: bool, error: bytes) -> str | None:
        """A job this replica holds goes back to the queue, claimed again no sooner than `delay_s` from now: after
        an outage the run is not counted (the job did nothing wrong); after a server error it is, and the job
        that has had `max_runs` runs fails with that error instead. Returns the status it now has (None: not
        held here any more)."""
        held = [jobs.c.id == job_id, jobs.c.status == "running", jobs.c.lease_owner == self.replica]
        async with self.db.begin() as conn:
            if count_run:
                failed = await conn.execute(
                    update(jobs)
                    .where(*held, jobs.c.runs >= self.max_runs)
                    .values(status="failed", error=error, lease_owner=None, lease_expires_at=None, **_finished_values())
                )
                if failed.rowcount:
                    return "failed"
            runs = jobs.c.runs if count_run else jobs.c.runs - 1
            queued = await conn.execute(
                update(jobs)
                .where(*held)
                .values(
                    status="queued",
                    started_at=None,
                    runs=runs,
                    lease_owner=None,
                    lease_expires_at=None,
                    not_before=epoch_now() + delay_s,
                )
            )
        return "queued" if queued.rowcount else None

    async def list(
        self, status: str | None, limit: int, after: str | None, owner: str | None = None
    ) -> tuple[list[Job], bool]:
        query = select(*COLUMNS).where(*_owned_by(owner))
        if status:
            query = query.where(jobs.c.status == status)
        if after:
            after_seq = select(jobs.c.seq).where(jobs.c.id == after).scalar_subquery()
            query = query.where(jobs.c.seq > func.coalesce(after_seq, 0))
        async with self.db.read() as conn:
            rows = (await conn.execute(query.order_by(jobs.c.seq).limit(limit + 1))).all()
        return [Job(*r) for r in rows[:limit]], len(rows) > limit

    async def unfinished(self, owner: str) -> int:
        """One owner's queued and running jobs (its quota)."""
        query = select(func.count()).where(jobs.c.owner == owner, jobs.c.status.in_(UNFINISHED))
        async with self.db.read() as conn:
            return (await conn.execute(query)).scalar_one()

    async def oldest_queued_at(self) -> float | None:
        """When the oldest queued job was submitted (what a claim takes first), or None."""
        query = select(func.min(jobs.c.created_at)).where(jobs.c.status == "queued")
        async with self.db.read() as conn:
            return (await conn.execute(query)).scalar_one()

    async def backlog(self) -> int:
        """Queued plus running jobs, over all replicas."""
        async with self.db.read() as conn:
            return (await conn.execute(select(func.count()).where(jobs.c.status.in_(UNFINISHED)))).scalar_one()

    async def claim_callbacks(self, limit: int = 16) -> list[Job]:
        """Due callbacks, leased to this replica: another replica delivers one only if this one dies."""
        now = epoch_now()
        due = (
            select(jobs.c.seq)
            .where(
                jobs.c.callback_state == "pending",
                jobs.c.callback_next_at <= now,
                or_(jobs.c.callback_owner.is_(None), jobs.c.callback_lease_expires_at < now),
            )
            .order_by(jobs.c.callback_next_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self.db.begin() as conn:
            rows = await conn.execute(
                update(jobs)
                .where(jobs.c.seq.in_(due))
                .values(callback_owner=self.replica, callback_lease_expires_at=now + self.lease_s)
                .returning(*COLUMNS)
            )
            return [Job(*r) for r in rows]

    async def callback_result(self, job_id: str, delivered: bool, retry_in_s: float | None, give_up: bool) -> None:
        state = "delivered" if delivered else ("failed" if give_up else "pending")
        next_at = None if retry_in_s is None else epoch_now() + retry_in_s
        async with self.db.begin() as conn:
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.callback_owner == self.replica)
                .values(
                    callback_state=state,
                    callback_attempts=jobs.c.callback_attempts + 1,
                    callback_next_at=next_at,
                    callback_owner=None,
                    callback_lease_expires_at=None,
                )
            )

    async def purge(self, older_than: float) -> int:
        """Finished jobs past their retention, except those with a callback still to deliver."""
        async with self.db.begin() as conn:
            deleted = await conn.execute(
                jobs.delete().where(
                    jobs.c.status.in_(TERMINAL),
                    jobs.c.finished_at < older_than,
                    func.coalesce(jobs.c.callback_state, "") != "pending",
                )
            )
        return deleted.rowcount


def _owned_by(owner: str | None) -> list[Any]:
    return [] if owner is None else [jobs.c.owner == owner]


def _finished_values() -> dict[str, Any]:
    """A finished job's time, and its callback (if it has a URL) due now."""
    return {
        "finished_at": time.time(),
        "callback_state": case((jobs.c.callback_url.is_(None), None), else_="pending"),
        "callback_next_at": epoch_now(),
    }
