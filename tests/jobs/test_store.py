"""The SQLite job store: claim order, single outcome, idempotency, re-queue after a crash, retention."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from monolith.errors import Conflict
from monolith.jobs.store import JobStore


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs.sqlite3")


def test_jobs_are_claimed_oldest_first_and_once(store: JobStore) -> None:
    first, _ = store.submit("rag", b'{"query":"a"}', None, None)
    second, _ = store.submit("rag", b'{"query":"b"}', None, None)
    claimed = [store.claim_next(), store.claim_next(), store.claim_next()]
    assert [j.id if j else None for j in claimed] == [first.id, second.id, None]
    assert claimed[0].status == "running" and claimed[0].runs == 1


def test_a_job_keeps_its_first_outcome(store: JobStore) -> None:
    job, _ = store.submit("chat", b"{}", None, None)
    store.claim_next()
    assert store.finish(job.id, "cancelled")
    assert not store.finish(job.id, "succeeded", result=b'{"late": true}')
    final = store.get(job.id)
    assert final.status == "cancelled" and final.result is None and final.finished_at


def test_idempotency_key_returns_the_first_job_and_rejects_a_different_body(store: JobStore) -> None:
    job, created = store.submit("rag", b'{"query":"a"}', None, "key-1")
    again, created_again = store.submit("rag", b'{"query":"a"}', None, "key-1")
    assert created and not created_again and again.id == job.id
    with pytest.raises(Conflict):
        store.submit("rag", b'{"query":"other"}', None, "key-1")


def test_running_jobs_survive_a_reopen_as_queued(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store = JobStore(path)
    job, _ = store.submit("rag", b"{}", None, None)
    store.claim_next()
    del store  # no close: as after kill -9
    reopened = JobStore(path)
    assert reopened.requeue_running() == 1
    again = reopened.claim_next()
    assert again.id == job.id and again.runs == 2


def test_list_filters_by_status_and_pages(store: JobStore) -> None:
    ids = [store.submit("rag", b"{}", None, None)[0].id for _ in range(5)]
    store.claim_next()
    page, more = store.list(None, 2, None)
    assert [j.id for j in page] == ids[:2] and more
    page, more = store.list(None, 2, ids[3])
    assert [j.id for j in page] == ids[4:] and not more
    assert [j.id for j in store.list("running", 10, None)[0]] == ids[:1]
    assert store.backlog() == 5


def test_retention_deletes_old_finished_jobs_but_not_pending_callbacks(store: JobStore) -> None:
    plain, _ = store.submit("rag", b"{}", None, None)
    with_callback, _ = store.submit("rag", b"{}", "http://127.0.0.1:9/cb", None)
    for job in (plain, with_callback):
        store.finish(job.id, "succeeded", result=b"{}")
    assert store.purge(time.time() + 1) == 1
    assert store.get(plain.id) is None and store.get(with_callback.id) is not None
    assert [j.id for j in store.due_callbacks(time.time() + 1)] == [with_callback.id]
