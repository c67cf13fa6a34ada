"""Admission control, per-request deadlines and the SIGTERM drain, through real HTTP on loopback.

The engine is scripted (tests/scripted.py) so that timing is deterministic; the same limits run
against the real engine in tests/api/test_overload_real.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest

from monolith.config import Settings
from monolith.metrics import QUEUE_DEPTH, REQUESTS_RUNNING
from tests.conftest import free_port
from tests.scripted import ScriptedEngine, ThreadedServer

COMPLETION = {"model": "twin", "prompt": "say something", "max_tokens": 5}


def configured(settings: Settings, max_waiting: int = 4, drain_s: float = 10, timeout_s: float = 30) -> Settings:
    return settings.model_copy(
        update={
            "admission": settings.admission.model_copy(update={"max_waiting": max_waiting}),
            "shutdown": settings.shutdown.model_copy(update={"drain_s": drain_s}),
            "server": settings.server.model_copy(update={"request_timeout_s": timeout_s}),
        }
    )


async def burst(base_url: str, n: int, body: dict, stream: bool = False) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        requests = [client.post("/v1/completions", json={**body, "stream": stream}) for _ in range(n)]
        return await asyncio.gather(*requests)


def test_four_times_the_capacity_gets_only_200s_and_429s_and_the_queue_empties(settings: Settings) -> None:
    engine = ScriptedEngine(capacity=2, gap_s=0.05)
    max_waiting = 4
    with ThreadedServer(configured(settings, max_waiting), engine, free_port()) as server:
        responses = asyncio.run(burst(server.base_url, 4 * (max_waiting + engine.capacity), COMPLETION))
        statuses = Counter(r.status_code for r in responses)
        assert set(statuses) == {200, 429}, statuses
        # Every admitted request was served; refused ones never reached the engine.
        assert statuses[200] >= max_waiting and engine.started == statuses[200]
        refused = [r for r in responses if r.status_code == 429]
        assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
        assert refused[0].json()["error"]["type"] == "overloaded"
        assert all(r.json()["usage"]["completion_tokens"] == 5 for r in responses if r.status_code == 200)
        assert (QUEUE_DEPTH._value.get(), REQUESTS_RUNNING._value.get()) == (0, 0)
        # Once drained, the same request is admitted again.
        assert httpx.post(f"{server.base_url}/v1/completions", json=COMPLETION).status_code == 200


def test_a_streamed_request_stays_admitted_until_its_last_frame(settings: Settings) -> None:
    engine = ScriptedEngine(capacity=1, gap_s=0.05)
    with ThreadedServer(configured(settings, max_waiting=1), engine, free_port()) as server:
        responses = asyncio.run(burst(server.base_url, 6, COMPLETION, stream=True))
        statuses = Counter(r.status_code for r in responses)
        assert set(statuses) == {200, 429}, statuses
        assert all(r.text.rstrip().endswith("data: [DONE]") for r in responses if r.status_code == 200)
        assert (QUEUE_DEPTH._value.get(), REQUESTS_RUNNING._value.get()) == (0, 0)


def test_the_client_deadline_ends_in_504_and_frees_the_engine(settings: Settings) -> None:
    engine = ScriptedEngine(capacity=2, gap_s=0.05)
    with ThreadedServer(configured(settings, timeout_s=30), engine, free_port()) as server:
        long = {**COMPLETION, "max_tokens": 200}  # 10 s of tokens
        started = time.monotonic()
        response = httpx.post(
            f"{server.base_url}/v1/completions", json=long, headers={"X-Request-Timeout": "0.5"}, timeout=30
        )
        assert response.status_code == 504, response.text
        assert response.json()["error"]["type"] == "timeout"
        assert time.monotonic() - started < 2
        assert engine.aborted == 1 and REQUESTS_RUNNING._value.get() == 0


@pytest.mark.parametrize("value", ["soon", "0", "-1", "31", "nan"])
def test_a_bad_deadline_header_is_a_400_naming_it(settings: Settings, value: str) -> None:
    with ThreadedServer(configured(settings, timeout_s=30), ScriptedEngine(), free_port()) as server:
        headers = {"X-Request-Timeout": value}
        response = httpx.post(f"{server.base_url}/v1/completions", json=COMPLETION, headers=headers)
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "X-Request-Timeout"


def test_sigterm_drains_in_flight_requests_and_refuses_new_ones(settings: Settings) -> None:
    engine = ScriptedEngine(capacity=4, gap_s=0.05)
    server = ThreadedServer(configured(settings, drain_s=10), engine, free_port())
    with server:

        async def scenario() -> tuple[list[httpx.Response], httpx.Response, httpx.Response, float]:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
                body = {**COMPLETION, "max_tokens": 30}  # 1.5 s each
                in_flight = [asyncio.create_task(client.post("/v1/completions", json=body)) for _ in range(3)]
                while engine.started < 3:
                    await asyncio.sleep(0.01)
                server.signal()
                signalled = time.monotonic()
                await asyncio.sleep(0.3)  # the next tick of the server loop starts the drain
                ready = await client.get("/health/ready")
                refused = await client.post("/v1/completions", json=COMPLETION)
                return await asyncio.gather(*in_flight), ready, refused, signalled

        finished, ready, refused, signalled = asyncio.run(scenario())
        server.thread.join(timeout=10)
        drained_in = time.monotonic() - signalled
    assert [r.status_code for r in finished] == [200, 200, 200]
    assert all(r.json()["usage"]["completion_tokens"] == 30 for r in finished)
    assert ready.status_code == 503 and ready.json()["status"] == "draining"
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
    assert not server.thread.is_alive() and drained_in < 10
    assert engine.aborted == 0


def test_the_drain_gives_up_after_drain_s(settings: Settings) -> None:
    engine = ScriptedEngine(capacity=1, gap_s=0.05)
    drain_s = 4.0  # above the 2 s close grace below, so an exit without the drain shows
    server = ThreadedServer(configured(settings, drain_s=drain_s), engine, free_port())
    with server:

        async def scenario() -> tuple[httpx.Response | Exception, float]:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
                # 400 tokens at 50 ms: 20 s, far longer than the drain.
                task = asyncio.create_task(client.post("/v1/completions", json={**COMPLETION, "max_tokens": 400}))
                while engine.started < 1:
                    await asyncio.sleep(0.01)
                server.signal()
                signalled = time.monotonic()
                try:
                    return await task, signalled
                except httpx.HTTPError as exc:
                    return exc, signalled

        outcome, signalled = asyncio.run(scenario())
        server.thread.join(timeout=15)
        stopped_in = time.monotonic() - signalled
    assert not server.thread.is_alive()
    # It waited for the drain (not an exit at once), then gave up: far below the 20 s request, and the
    # in-flight request was cut off, its engine request aborted rather than finished.
    assert drain_s <= stopped_in < drain_s + 6, stopped_in  # + the close grace for the connection (2 s here)
    assert isinstance(outcome, httpx.HTTPError) or outcome.status_code >= 500, outcome
    assert engine.aborted == 1 and engine.finished == 0
