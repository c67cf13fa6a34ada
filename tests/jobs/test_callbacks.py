"""Callbacks to real HTTP receivers on loopback (allowed through callbacks.allow): Standard Webhooks
signatures, retries with exponential backoff, giving up, and every kind of failure recorded as an attempt."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monolith.config import CallbacksSettings
from monolith.jobs.callbacks import (
    ID_HEADER,
    LEGACY_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    CallbackSender,
    legacy_signature,
    sign,
    verify,
)
from monolith.store.database import Database, open_database
from monolith.store.jobs import JobStore
from tests.helpers import Receiver

SECURITY_PAGE = Path(__file__).resolve().parents[2] / "docs" / "security.md"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LOOPBACK = ["localhost"]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    database: Database = await open_database("jobs.sqlite3", tmp_path)
    yield JobStore(database, "replica-a", lease_s=30, max_runs=3)
    await database.close()


async def finished_job(store: JobStore, url: str) -> str:
    job, _ = await store.submit("rag", b"{}", url, None)
    await store.finish(job.id, "succeeded", result=b'{"answer": "hi"}')
    return job.id


async def deliver_until_settled(store: JobStore, sender: CallbackSender, job_id: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (await store.get(job_id)).callback_state == "pending" and time.monotonic() < deadline:
        await sender.deliver_due(lambda j: b'{"id": "%s"}' % j.id.encode())
        await asyncio.sleep(0.02)


def test_standard_webhooks_signatures_verify_and_reject_tampering_and_replays() -> None:
    body, now = b'{"id": "job-1"}', time.time()
    headers = {ID_HEADER: "job-1", TIMESTAMP_HEADER: str(int(now))}
    headers[SIGNATURE_HEADER] = sign(SECRET, "job-1", int(now), body)
    assert verify(SECRET, headers, body, now=now)
    assert not verify(SECRET, headers, body + b" ", now=now)
    assert not verify("whsec_" + "A" * 32, headers, body, now=now)
    assert not verify(SECRET, {**headers, ID_HEADER: "job-2"}, body, now=now)
    assert not verify(SECRET, headers, body, now=now + 600), "an old message replayed is refused"
    # The Standard Webhooks test vector (standardwebhooks.com): the libraries of every language agree on it.
    vector = sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert vector == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


async def test_callback_is_retried_with_exponential_backoff_then_delivered_signed(store: JobStore) -> None:
    receiver = Receiver(fail_first=3)
    backoff_s = 0.3
    settings = CallbacksSettings(secret=SECRET, backoff_s=backoff_s, max_attempts=5, allow=LOOPBACK)
    sender = CallbackSender(store, settings)
    try:
        job_id = await finished_job(store, receiver.url)
        await deliver_until_settled(store, sender, job_id, timeout_s=10)
    finally:
        await sender.close()
        receiver.close()
    final = await store.get(job_id)
    assert final.callback_state == "delivered" and final.callback_attempts == 4
    assert len(receiver.received) == 4
    # Attempt n+1 waits backoff * 2**(n-1) after attempt n: 0.3, 0.6, 1.2 s (the loop polls every 20 ms).
    gaps = [later - earlier for earlier, later in zip(receiver.arrived, receiver.arrived[1:], strict=False)]
    for n, gap in enumerate(gaps):
        expected = backoff_s * 2**n
        assert expected <= gap < expected + 0.25, (n, gaps)
    headers, body = receiver.received[-1]
    assert verify(SECRET, headers, body)
    assert {h[ID_HEADER] for h, _ in receiver.received} == {job_id}, "one message id across the retries"
    assert headers[LEGACY_SIGNATURE_HEADER] == legacy_signature(SECRET, body)
    assert headers["X-Monolith-Job-Id"] == job_id


async def test_callback_gives_up_after_max_attempts(store: JobStore) -> None:
    settings = CallbacksSettings(backoff_s=0.01, max_attempts=2, timeout_s=1, allow=LOOPBACK)
    sender = CallbackSender(store, settings)
    job_id = await finished_job(store, "http://localhost:9/nothing-listens")
    await deliver_until_settled(store, sender, job_id, timeout_s=5)
    await sender.close()
    final = await store.get(job_id)
    assert final.callback_state == "failed" and final.callback_attempts == 2


@pytest.mark.parametrize(
    ("receiver_kwargs", "allow"),
    [
        ({"status": 302}, LOOPBACK),  # a redirect is not followed: it could point anywhere
        ({"delay_s": 3.0}, LOOPBACK),  # slower than the 1 s limit of an attempt
        ({}, []),  # loopback, not allowed: refused at delivery (the allow list changed since submit)
    ],
    ids=["redirect", "slow", "refused"],
)
async def test_every_failure_is_a_recorded_attempt(store: JobStore, receiver_kwargs: dict, allow: list) -> None:
    receiver = Receiver(**receiver_kwargs)
    settings = CallbacksSettings(backoff_s=0.01, max_attempts=2, timeout_s=1, allow=allow)
    sender = CallbackSender(store, settings)
    try:
        job_id = await finished_job(store, receiver.url)
        started = time.monotonic()
        await deliver_until_settled(store, sender, job_id, timeout_s=10)
        took = time.monotonic() - started
    finally:
        await sender.close()
        receiver.close()
    final = await store.get(job_id)
    assert final.callback_state == "failed" and final.callback_attempts == 2
    assert took < 2 * 1 + 1.5, "each attempt within callbacks.timeout_s"
    if not allow:
        assert receiver.received == [], "nothing was sent to a refused address"


async def test_a_huge_answer_is_not_read(store: JobStore) -> None:
    receiver = Receiver(reply_bytes=256 * 1024 * 1024)
    sender = CallbackSender(store, CallbacksSettings(allow=LOOPBACK, timeout_s=5))
    try:
        job_id = await finished_job(store, receiver.url)
        started = time.monotonic()
        await deliver_until_settled(store, sender, job_id, timeout_s=10)
        assert time.monotonic() - started < 3
    finally:
        await sender.close()
        receiver.close()
    assert (await store.get(job_id)).callback_state == "delivered"


def documented_verifier() -> dict:
    """The security page's receiver-side example, run as a receiver would run it."""
    text = SECURITY_PAGE.read_text()
    block = re.search(r"```python\n(# Verify a monolith callback.*?)```", text, re.S)
    assert block, "docs/security.md shows how to verify a callback"
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):  # its own demonstration prints
        exec(compile(block.group(1), "docs/security.md", "exec"), namespace)
    return namespace


async def test_a_delivered_callback_verifies_with_the_documented_example(store: JobStore) -> None:
    receiver = Receiver()
    sender = CallbackSender(store, CallbacksSettings(secret=SECRET, allow=LOOPBACK))
    try:
        job_id = await finished_job(store, receiver.url)
        await deliver_until_settled(store, sender, job_id, timeout_s=5)
    finally:
        await sender.close()
        receiver.close()
    headers, body = receiver.received[0]
    example = documented_verifier()
    assert example["verify_callback"](SECRET, headers, body) is True
    assert example["verify_callback"](SECRET, headers, body.replace(b"job-", b"jab-")) is False
    stale = {**headers, TIMESTAMP_HEADER: str(int(time.time()) - 3600)}
    assert example["verify_callback"](SECRET, stale, body) is False


async def test_the_post_goes_to_the_address_that_was_checked(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: a name that resolves to an admitted address when checked and to another one a moment later
    must not lead the POST there. The sender connects to the address it checked; no second lookup happens."""
    checked = Receiver()
    port = checked.server.server_address[1]
    elsewhere = Receiver(address=("127.0.0.2", port))  # the same port on another loopback address
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: str | bytes, *args, **kwargs):  # the first answer is the checked one, every later differs
        if (host.decode() if isinstance(host, bytes) else host) != "hooks.example":
            return real(host, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) == 1 else "127.0.0.2"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    settings = CallbacksSettings(allow=["hooks.example"], max_attempts=1)
    sender = CallbackSender(store, settings)
    try:
        job_id = await finished_job(store, f"http://hooks.example:{port}/hook")
        await deliver_until_settled(store, sender, job_id, timeout_s=10)
    finally:
        await sender.close()
        checked.close()
        elsewhere.close()
    assert (await store.get(job_id)).callback_state == "delivered"
    assert len(checked.received) == 1 and elsewhere.received == [], "the POST followed a second lookup"
    assert checked.received[0][0]["Host"] == f"hooks.example:{port}"  # the name, for virtual hosts and TLS
