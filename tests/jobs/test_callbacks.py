"""Callbacks to a real HTTP receiver on loopback: signature, retries with backoff, giving up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monolith.config import JobsSettings
from monolith.jobs.callbacks import SIGNATURE_HEADER, CallbackSender, sign, verify
from monolith.jobs.store import JobStore
from tests.helpers import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=2)
    yield r
    r.close()


def test_signature_round_trip() -> None:
    body = b'{"id": "job-1"}'
    assert verify("s3cret", body, sign("s3cret", body))
    assert not verify("s3cret", body + b" ", sign("s3cret", body))
    assert not verify("other", body, sign("s3cret", body))


async def test_callback_is_retried_with_backoff_then_delivered_signed(tmp_path: Path, receiver: Receiver) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    settings = JobsSettings(callback_secret="s3cret", callback_backoff_s=0.1, callback_max_attempts=5)
    sender = CallbackSender(store, settings)
    job, _ = store.submit("rag", b"{}", receiver.url, None)
    store.finish(job.id, "succeeded", result=b'{"answer": "hi"}')
    deadline = time.time() + 5
    while store.get(job.id).callback_state == "pending" and time.time() < deadline:
        await sender.deliver_due(lambda j: b'{"id": "%s"}' % j.id.encode())
        await asyncio.sleep(0.05)
    await sender.close()
    final = store.get(job.id)
    assert final.callback_state == "delivered" and final.callback_attempts == 3
    assert len(receiver.received) == 3
    headers, body = receiver.received[-1]
    assert verify("s3cret", body, headers[SIGNATURE_HEADER])
    assert headers["X-Monolith-Job-Id"] == job.id


async def test_callback_gives_up_after_max_attempts(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    sender = CallbackSender(store, JobsSettings(callback_backoff_s=0.01, callback_max_attempts=2, callback_timeout_s=1))
    job, _ = store.submit("rag", b"{}", "http://127.0.0.1:9/nothing-listens", None)
    store.finish(job.id, "failed", error=b"{}")
    for _ in range(20):
        await sender.deliver_due(lambda j: b"{}")
        if store.get(job.id).callback_state != "pending":
            break
        await asyncio.sleep(0.05)
    await sender.close()
    assert store.get(job.id).callback_state == "failed" and store.get(job.id).callback_attempts == 2
