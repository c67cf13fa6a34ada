"""Files and batches on both backends: atomic file writes, one runner per batch, cancel from any replica,
takeover after a lapsed lease."""

from __future__ import annotations

import asyncio
import errno
import io
import time
from pathlib import Path

import pytest

from monolith.errors import Conflict, StorageFull
from monolith.store.batches import BatchStore
from monolith.store.database import Database
from monolith.store.files import FileStore


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


async def test_one_replica_runs_a_batch_and_renews_it(db: Database, other_db: Database, tmp_path: Path) -> None:
    a, b = replica(db, tmp_path, "a", lease_s=0.5), replica(other_db, tmp_path, "b", lease_s=0.5)
    batch = await a.create_batch("/v1/completions", "file-in", "24h", None)
    claims = await asyncio.gather(a.claim_next(), b.claim_next())
    assert [c.id for c in claims if c] == [batch.id]
    holder = a if claims[0] else b
    other = b if holder is a else a
    for _ in range(4):
        await asyncio.sleep(0.2)
        assert await holder.renew(batch.id) == "validating"
        assert await other.claim_next() is None
    assert await other.renew(batch.id) is None
    assert not await other.update_held(batch.id, status="in_progress")


async def test_a_cancel_on_another_replica_marks_a_running_batch_cancelling(
    db: Database, other_db: Database, tmp_path: Path
) -> None:
    a, b = replica(db, tmp_path, "a"), replica(other_db, tmp_path, "b")
    running = await a.create_batch("/v1/completions", "file-in", "24h", None)
    await a.claim_next()
    waiting = await a.create_batch("/v1/completions", "file-in", "24h", None)
    await b.cancel(running.id)
    await b.cancel(waiting.id)
    assert await a.renew(running.id) == "cancelling", "the runner hears of it at its next heartbeat"
    assert (await a.get_batch(waiting.id)).status == "cancelled", "nobody ran it: cancelled at once"
    assert await a.finish_held(running.id, "cancelled", cancelled_at=1)
    assert (await b.get_batch(running.id)).status == "cancelled"


async def test_a_batch_whose_runner_died_is_taken_over_then_failed_after_max_runs(
    db: Database, other_db: Database, tmp_path: Path
) -> None:
    a = replica(db, tmp_path, "a", lease_s=0.2, max_runs=2)
    b = replica(other_db, tmp_path, "b", lease_s=0.2, max_runs=2)
    batch = await a.create_batch("/v1/completions", "file-in", "24h", None)
    assert (await a.claim_next()).runs == 1
    await asyncio.sleep(0.3)
    taken = await b.claim_next()
    assert taken.id == batch.id and taken.runs == 2
    await asyncio.sleep(0.3)
    assert await a.claim_next() is None
    failed = await a.get_batch(batch.id)
    assert failed.status == "failed" and "2 times" in failed.error


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
