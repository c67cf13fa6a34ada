"""Admission, deadlines, readiness during a real model load and the SIGTERM drain, in a real `monolith serve`."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.test_health import gauge, metric_samples
from tests.conftest import ManagedServer, managed_server
from tests.helpers import eventually

MAX_NUM_SEQS = 2
MAX_WAITING = 2
DRAIN_S = 90

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[ManagedServer]:
    env = {
        "MONOLITH_ENGINE__MAX_NUM_SEQS": str(MAX_NUM_SEQS),
        "MONOLITH_ADMISSION__MAX_WAITING": str(MAX_WAITING),
        "MONOLITH_SHUTDOWN__DRAIN_S": str(DRAIN_S),
    }
    with managed_server(tmp_path_factory.mktemp("small"), model_dir, env) as managed:
        yield managed


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


async def metric(client: httpx.AsyncClient, name: str) -> float:
    return metric_samples((await client.get("/metrics")).text)[name][0].value


STORY = {"model": "twin", "prompt": "Write a story.", "max_tokens": 48, "ignore_eos": True, "stream": True}


async def stream_text(client: httpx.AsyncClient, body: dict) -> str:
    """The whole SSE body, or what arrived before the server cut the stream."""
    received: list[str] = []
    try:
        async with client.stream("POST", "/v1/completions", json=body) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                received.append(line)
    except httpx.HTTPError:
        pass
    return "".join(received)


def test_readiness_is_503_while_the_real_model_loads_and_liveness_answers(small: ManagedServer) -> None:
    small.up()
    loading = [p for p in small.probes if p.ready_status == 503]
    assert len(loading) >= 3, small.probes  # the model load takes tens of seconds
    assert {p.phase for p in loading} == {"loading"}
    assert all(p.live for p in small.probes), "liveness answers 200 throughout the load"
    assert small.probes[-1].ready_status == 200


def test_four_times_capacity_gets_only_200s_and_429s(small: ManagedServer) -> None:
    server = small.up()
    body = {"model": "twin", "prompt": "Tell me about vLLM.", "max_tokens": 8, "ignore_eos": True}
    n = 4 * (MAX_WAITING + MAX_NUM_SEQS)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as client:
            return await asyncio.gather(*(client.post("/v1/completions", json=body) for _ in range(n)))

    responses = asyncio.run(burst())
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 429} and statuses[200] >= MAX_WAITING, statuses
    assert statuses[429] > 0, statuses
    assert all(int(r.headers["retry-after"]) >= 1 for r in responses if r.status_code == 429)
    assert all(r.json()["usage"]["completion_tokens"] == 8 for r in responses if r.status_code == 200)
    with httpx.Client(base_url=server.base_url) as http:
        eventually(lambda: gauge(http, "monolith_queue_depth") == 0, 10, "the queue depth to reach 0")
        eventually(lambda: gauge(http, "monolith_requests_running") == 0, 10, "nothing to be running")


def test_the_deadline_ends_a_real_generation_in_504_and_aborts_it_in_the_engine(small: ManagedServer) -> None:
    server = small.up()
    long = {"model": "twin", "prompt": "Write a long story.", "max_tokens": 1000, "ignore_eos": True}

    async def scenario() -> tuple[httpx.Response, float, float]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as client:
            started = time.monotonic()
            response = await client.post("/v1/completions", json=long, headers={"X-Request-Timeout": "2"})
            elapsed = time.monotonic() - started
            # Were it still generating, the engine's scheduler would run two requests during this one.
            async with client.stream("POST", "/v1/completions", json={**STORY, "max_tokens": 32}) as probe:
                lines = 0
                async for _ in probe.aiter_lines():
                    lines += 1
                    if lines == 12:
                        break
                engine_running = await metric(client, "monolith_engine_running")
            return response, elapsed, engine_running

    response, elapsed, engine_running = asyncio.run(scenario())
    assert response.status_code == 504, response.text
    assert response.json()["error"]["type"] == "timeout"
    assert 2 <= elapsed < 8, elapsed
    assert engine_running == 1, "the timed-out request was aborted in the engine"


def test_sigterm_finishes_in_flight_requests_and_exits_0(small: ManagedServer) -> None:
    server = small.up()

    async def scenario() -> tuple[list[str], httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as client:
            in_flight = [asyncio.create_task(stream_text(client, STORY)) for _ in range(2)]

            async def both_running() -> bool:
                return await metric(client, "monolith_requests_running") == 2

            await until(both_running, 60, "two streams generating")
            in_flight.append(asyncio.create_task(stream_text(client, STORY)))  # queued for a slot at SIGTERM

            async def one_queued() -> bool:
                return await metric(client, "monolith_queue_depth") == 1

            await until(one_queued, 30, "a third stream queued")
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            ready = await client.get("/health/ready")
            refused = await client.post("/v1/completions", json={**STORY, "stream": False})
            return await asyncio.gather(*in_flight), ready, refused

    signalled = time.monotonic()
    streams, ready, refused = asyncio.run(scenario())
    rc = server.proc.wait(timeout=DRAIN_S + 30)
    assert rc == 0, server.log()[-3000:]
    assert time.monotonic() - signalled < DRAIN_S
    assert all(s.endswith("data: [DONE]") and s.count('"finish_reason":"length"') == 1 for s in streams)
    assert ready.status_code == 503 and ready.json()["status"] == "draining"
    assert refused.status_code == 503 and "retry-after" in refused.headers
    assert "drain finished" in server.log()
    # A normal exit says nothing alarming: no traceback, no "engine dead" from vLLM's own shutdown.
    for noise in ("Traceback", "EngineDeadError", "Exception ignored"):
        assert noise not in server.log(), server.log()[-3000:]


def test_a_second_sigterm_ends_the_drain_at_once(small: ManagedServer) -> None:
    server = small.up()
    endless = {**STORY, "max_tokens": 1000}  # over a minute of tokens; the drain would wait 90 s

    async def scenario() -> tuple[str, float]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as client:
            stream = asyncio.create_task(stream_text(client, endless))

            async def generating() -> bool:
                return await metric(client, "monolith_requests_running") == 1

            await until(generating, 60, "the stream to generate")
            server.proc.send_signal(signal.SIGTERM)

            async def draining() -> bool:
                return (await client.get("/health/ready")).json()["status"] == "draining"

            await until(draining, 10, "the drain to start")
            server.proc.send_signal(signal.SIGTERM)
            second = time.monotonic()
            return await stream, second

    text, second = asyncio.run(scenario())
    server.proc.wait(timeout=30)
    stopped_in = time.monotonic() - second
    assert stopped_in < 15, stopped_in  # uvicorn's own shutdown: 5 s of grace for open connections
    assert not text.endswith("data: [DONE]"), "the in-flight stream was cut off, not finished"
    assert "drain finished" not in server.log()
