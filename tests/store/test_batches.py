"""Files and batches on both backends: atomic file writes, one runner per shard, shards round-robin over owners
and batches, cancel from any replica, takeover after a lapsed lease, a batch's end once its shards stopped."""

from __future__ import annotations

import asyncio
import errno
import io
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from monolith.errors import Conflict, StorageFull
from monolith.store.batches import BatchStore, ShardPlan
from monolith.store.database import Database
from monolith.store.files import FileStore
from monolith.store.tables import batches


def replica(db: Database, files: Path, name: str, lease_s: float = 30, max_runs: int = 3) -> BatchStore:
    return BatchStore(db, FileStore(db, files), name, lease_s, max_runs)


async def test_a_file_is_written_whole_and_readable_from_another_replica(
    db: Database, other_db: Database, tmp_path: Path
) -> None:
    a, b = replica(db, tmp_path / "files", "a"), replica(other_db, tmp_path / "files", "b")
    record = await a.files.add_file_from(
        io.BytesIO(b'{"x": 1}\n'), "in.jsonl", "batch", "", lambda n, line: None, 10, 100
    )
    assert await b.files.get_file(record.id) == record
    assert b.path_of(record.id).read_bytes() == b'{"x": 1}\n'
    assert [p.name for p in (tmp_path / "files").iterdir()] == [f"{record.id}.jsonl"], "no partial file left"


PLANS = [ShardPlan(0, 10, 1, 2), ShardPlan(10, 20, 3, 2), ShardPlan(20, None, 5, 1)]


async def ended_batch(store: BatchStore) -> tuple[str, str] | None:
    ending = await store.claim_ending()
    return (ending[0].id, ending[1]) if ending else None


async def test_a_batch_is_made_of_shards_each_run_by_one_replica(
    db: Database, other_db: Database, tmp_path: Path
) -> None:
    a, b = replica(db, tmp_path, "a", lease_s=0.5), replica(other_db, tmp_path, "b", lease_s=0.5)
    batch = await a.create_batch("/v1/completions", "file-in", "24h", None, shards=PLANS[:2])
    assert batch.total == 4 and batch.status == "validating"
    claims = await asyncio.gather(a.claim_shard(), b.claim_shard())
    assert sorted(c.idx for c in claims if c) == [0, 1], "two replicas, two different shards"
    assert {c.plan for c in claims if c} == set(PLANS[:2]) and all(c.batch_id == batch.id for c in claims if c)
    mine = {store: shard.seq for store, shard in zip((a, b), claims, strict=True) if shard}
    for _ in range(4):
        await asyncio.sleep(0.2)
        for store, seq in mine.items():
            assert await store.renew_shards([seq]) == {seq: None}
        assert await a.claim_shard() is None, "both shards held"
    assert await a.renew_shards([mine[b]]) == {}, "not a's shard"
    assert (await b.get_batch(batch.id)).status == "in_progress"
    assert await a.count_lines(mine[a], 1, 0) is None and await b.count_lines(mine[b], 1, 1) is None
    counts = await a.get_batch(batch.id)
    assert (counts.completed, counts.failed) == (2, 1), "a running batch counts over its shards"
    assert await a.lines_waiting() == 1
    assert await ended_batch(a) is None, "shards still running"
    assert await a.finish_shard(mine[a], 2, 0) and await b.finish_shard(mine[b], 1, 1)
    assert await ended_batch(b) == (batch.id, "completed")
    assert await ended_batch(a) is None, "b holds its ending"
    assert await b.hold_batch(batch.id) and not await a.hold_batch(batch.id)
    assert await b.finish_held(batch.id, "completed", completed=3, failed=1)
    assert (await a.get_batch(batch.id)).completed == 3 and await a.lines_waiting() == 0


async def test_a_cancel_on_another_replica_marks_a_running_batch_cancelling(
    db: Database, other_db: Database, tmp_path: Path
) -> None:
    a, b = replica(db, tmp_path, "a"), replica(other_db, tmp_path, "b")
    running = await a.create_batch("/v1/completions", "file-in", "24h", None, shards=PLANS)
    shard = await a.claim_shard()
    waiting = await a.create_batch("/v1/completions", "file-in", "24h", None, shards=PLANS)
    await b.cancel(running.id)
    await b.cancel(waiting.id)
    assert await a.renew_shards([shard.seq]) == {shard.seq: "cancelling"}, "heard at the next heartbeat"
    assert (await a.get_batch(waiting.id)).status == "cancelled", "nobody ran it: cancelled at once"
    assert await a.claim_shard() is None, "no shard of a cancelling or cancelled batch is claimed"
    assert await ended_batch(b) is None, "a shard still runs"
    await a.let_go(shard.seq)
    assert await ended_batch(b) == (running.id, "cancelled")


async def test_a_shard_whose_runner_died_is_taken_over_then_fails_its_batch_after_max_runs(
    db: Database, other_db: Database, tmp_path: Path
) -> None:
    a = replica(db, tmp_path, "a", lease_s=0.2, max_runs=2)
    b = replica(other_db, tmp_path, "b", lease_s=0.2, max_runs=2)
    batch = await a.create_batch("/v1/completions", "file-in", "24h", None, shards=PLANS[:1])
    first = await a.claim_shard()
    assert first.runs == 1
    await asyncio.sleep(0.3)
    taken = await b.claim_shard()
    assert (taken.seq, taken.runs) == (first.seq, 2), "max_runs counts the shard's claims"
    assert await a.renew_shards([first.seq]) == {}, "the dead runner lost it"
    await asyncio.sleep(0.3)
    assert await a.claim_shard() is None
    failed = await a.get_batch(batch.id)
    assert failed.status == "failed" and "2 times" in failed.error


async def test_shards_are_taken_round_robin_over_owners_then_batches(db: Database, tmp_path: Path) -> None:
    store = replica(db, tmp_path, "a")
    big = await store.create_batch("/v1/completions", "file-in", "24h", None, owner="p", shards=PLANS * 2)
    small = await store.create_batch("/v1/completions", "file-in", "24h", None, owner="p", shards=PLANS[:1])
    other = await store.create_batch("/v1/completions", "file-in", "24h", None, owner="q", shards=PLANS[:2])
    order = []
    while shard := await store.claim_shard():
        order.append(shard.batch_id)
        await asyncio.sleep(0.01)  # the database clock moves on between claims
    names = {big.id: "big", small.id: "small", other.id: "other"}
    assert [names[b] for b in order[:5]] == ["big", "other", "small", "other", "big"], order
    assert len(order) == 9


async def test_a_batch_past_its_window_runs_no_more_and_ends_expired(db: Database, tmp_path: Path) -> None:
    store = replica(db, tmp_path, "a")
    batch = await store.create_batch("/v1/completions", "file-in", "24h", None, shards=PLANS)
    assert batch.expires_at == batch.created_at + 86400
    shard = await store.claim_shard()
    async with db.begin() as conn:
        await conn.execute(update(batches).where(batches.c.id == batch.id).values(expires_at=int(time.time()) - 1))
    assert await store.renew_shards([shard.seq]) == {shard.seq: "expired"}
    assert await store.claim_shard() is None
    assert await ended_batch(store) is None, "its running shard stops first"
    await store.let_go(shard.seq)
    assert await ended_batch(store) == (batch.id, "expired")


async def test_the_output_file_record_is_written_once(db: Database, tmp_path: Path) -> None:
    store = replica(db, tmp_path, "a")
    batch = await store.create_batch("/v1/completions", "file-in", "24h", None)
    store.path_of(batch.output_file_id).write_bytes(b"one\n")
    await store.register_output(batch)
    store.path_of(batch.output_file_id).write_bytes(b"one\ntwo\n")
    await store.register_output(batch)
    record = await store.files.get_file(batch.output_file_id)
    assert record.bytes == 8 and record.purpose == "batch_output"


def checked(content: bytes, store: BatchStore, owner: str = "a"):
    return store.files.add_file_from(io.BytesIO(content), "in.jsonl", "batch", owner, lambda n, line: None, 100, 1000)


async def test_files_are_listed_per_owner_counted_and_expired(db: Database, tmp_path: Path) -> None:
    store = replica(db, tmp_path / "files", "a")
    mine = [await checked(b'{"n": %d}\n' % i, store) for i in range(3)]
    theirs = await checked(b'{"other": 1}\n', store, owner="b")
    page, more = await store.files.list_files("a", "batch", 2, None)
    assert {f.id for f in page} <= {f.id for f in mine} and more
    rest, more = await store.files.list_files("a", None, 10, page[-1].id)
    assert {f.id for f in page + rest} == {f.id for f in mine} and not more
    assert await store.files.usage("a") == (3, sum(f.bytes for f in mine))
    running = await store.create_batch("/v1/completions", mine[0].id, "24h", None, owner="a")
    assert running.status == "validating"
    assert await store.files.expire_files(int(time.time()) + 10) == 3, "every file but a running batch's input"
    assert await store.files.get_file(mine[0].id) and not store.path_of(mine[1].id).exists()
    assert await store.files.get_file(theirs.id) is None
    stale, fresh = store.part_of("batch_failed", 0), store.part_of("batch_running", 0)
    stale.parent.mkdir()
    stale.write_bytes(b"{}\n")
    fresh.write_bytes(b"{}\n")
    os.utime(stale, (time.time() - 100, time.time() - 100))
    assert await store.files.expire_files(int(time.time()) - 50) == 0
    assert not stale.exists() and fresh.exists(), "a part left by a failed batch goes when it is as old as a file"


async def test_a_file_a_running_batch_reads_cannot_be_deleted(db: Database, tmp_path: Path) -> None:
    store = replica(db, tmp_path / "files", "a")
    source = await checked(b'{"n": 1}\n', store)
    await store.create_batch("/v1/completions", source.id, "24h", None, owner="a")
    with pytest.raises(Conflict):
        await store.files.delete_file(source.id, "a")
    assert not await store.files.delete_file(source.id, "someone-else")
    other = await checked(b'{"n": 2}\n', store)
    assert await store.files.delete_file(other.id, "a") and not store.path_of(other.id).exists()


async def test_a_full_disk_is_a_507_and_leaves_nothing_half_written(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = replica(db, tmp_path / "files", "a")
    kept = await checked(b'{"n": 1}\n', store)

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("monolith.store.atomic.os.fsync", disk_full)
    with pytest.raises(StorageFull):
        await checked(b'{"n": 2}\n' * 50, store)
    assert [p.name for p in (tmp_path / "files").iterdir()] == [f"{kept.id}.jsonl"]
    assert store.path_of(kept.id).read_bytes() == b'{"n": 1}\n' and await store.files.usage("a") == (1, kept.bytes)
