"""A running HTTP batch's progress counts: coalesced into a write at most every so often, none lost, none written
after the batch's final counts (on the real job store, SQLite)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monolith.errors import StoreDown
from monolith.jobs.batches import LineCounts
from monolith.store.batches import BatchStore
from monolith.store.database import open_database
from monolith.store.files import FileStore

EVERY_S = 0.3


class CountedStore(BatchStore):
    """The real store, with its progress writes counted, and the first `failing` of them refused as in an outage."""

    def __init__(self, *args, failing: int = 0) -> None:
        super().__init__(*args)
        self.writes = 0
        self.failing = failing

    async def count_lines(self, batch_id: str, completed: int, failed: int) -> None:
        self.writes += 1
        if self.failing:
            self.failing -= 1
            raise StoreDown("the job store is unreachable; retry later")
        await super().count_lines(batch_id, completed, failed)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountedStore]:
    db = await open_database("jobs.sqlite3", tmp_path)
    yield CountedStore(db, FileStore(db, tmp_path / "files"), "a", 30.0, 3)
    await db.close()


async def counts(store: BatchStore, batch_id: str) -> tuple[int, int]:
    batch = await store.get_batch(batch_id)
    assert batch is not None
    return batch.completed, batch.failed


async def test_lines_answered_together_are_counted_in_one_write(store: CountedStore) -> None:
    batch = await store.create_batch("/v1/chat/completions", "file-in", "24h", None)
    line_counts = LineCounts(store, batch.id, EVERY_S)
    for ok in (True, True, False, True, False):
        await line_counts.add(ok)
    assert await counts(store, batch.id) == (0, 0), "not a write per line"
    await asyncio.sleep(EVERY_S * 2)
    assert await counts(store, batch.id) == (3, 2)
    assert store.writes == 1
    await line_counts.add(True)
    await asyncio.sleep(EVERY_S * 2)
    assert await counts(store, batch.id) == (4, 2), "a line after a write is counted by the next"
    assert store.writes == 2
    await line_counts.close()


async def test_a_progress_write_that_fails_keeps_its_lines_for_the_next(store: CountedStore) -> None:
    store.failing = 1
    batch = await store.create_batch("/v1/chat/completions", "file-in", "24h", None)
    line_counts = LineCounts(store, batch.id, EVERY_S)
    await line_counts.add(True)
    await line_counts.add(False)
    await asyncio.sleep(EVERY_S * 3)
    assert store.writes == 2, "tried again"
    assert await counts(store, batch.id) == (1, 1)
    await line_counts.close()


async def test_nothing_is_written_after_close(store: CountedStore) -> None:
    """The batch's final counts are written from its output file right after close: a progress write landing
    after them would add to them."""
    batch = await store.create_batch("/v1/chat/completions", "file-in", "24h", None)
    line_counts = LineCounts(store, batch.id, EVERY_S)
    await line_counts.add(True)
    await line_counts.close()
    await asyncio.sleep(EVERY_S * 2)
    assert store.writes == 0
    assert await counts(store, batch.id) == (0, 0)
