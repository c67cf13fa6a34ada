"""Admission and the SIGTERM drain with the real engine, in a real `monolith serve` process."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.test_health import gauge
from tests.conftest import ServerProcess, start_server, stop_server, wait_ready

MAX_NUM_SEQS = 2
MAX_WAITING = 2
DRAIN_S = 90


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[ServerProcess]:
    env = {
        "MONOLITH_ENGINE__MAX_NUM_SEQS": str(MAX_NUM_SEQS),
        "MONOLITH_ADMISSION__MAX_WAITING": str(MAX_WAITING),
        "MONOLITH_SHUTDOWN__DRAIN_SECONDS": str(DRAIN_S),
    }
    srv = start_server(tmp_path_factory.mktemp("small"), model_dir, env)
    try:
        wait_ready(srv)
        yield srv
    finally:
        stop_server(srv)


pytestmark = pytest.mark.slow


def test_four_times_capacity_gets_only_200s_and_429s(small_server: ServerProcess) -> None:
    body = {"model": "twin", "prompt": "Tell me about vLLM.", "max_tokens": 8, "ignore_eos": True}
    n = 4 * (MAX_WAITING + MAX_NUM_SEQS)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=small_server.base_url, timeout=120) as client:
            return await asyncio.gather(*(client.post("/v1/completions", json=body) for _ in range(n)))

    responses = asyncio.run(burst())
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 429} and statuses[200] >= MAX_WAITING, statuses
    assert statuses[429] > 0, statuses
    assert all(int(r.headers["retry-after"]) >= 1 for r in responses if r.status_code == 429)
    assert all(r.json()["usage"]["completion_tokens"] == 8 for r in responses if r.status_code == 200)
    with httpx.Client(base_url=small_server.base_url) as http:
        assert gauge(http, "monolith_queue_depth") == 0
        assert gauge(http, "monolith_requests_running") == 0


def test_sigterm_finishes_in_flight_requests_and_exits_0(small_server: ServerProcess) -> None:
    body = {"model": "twin", "prompt": "Write a story.", "max_tokens": 48, "ignore_eos": True, "stream": True}

    async def scenario() -> tuple[list[str], httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(base_url=small_server.base_url, timeout=120) as client:

            async def stream() -> str:
                async with client.stream("POST", "/v1/completions", json=body) as response:
                    assert response.status_code == 200
                    return "".join([line async for line in response.aiter_lines()])

            in_flight = [asyncio.create_task(stream()) for _ in range(2)]
            while "monolith_requests_running 2.0" not in (await client.get("/metrics")).text:
                await asyncio.sleep(0.1)
            in_flight.append(asyncio.create_task(stream()))  # waits for an engine slot: queued at SIGTERM
            while "monolith_queue_depth 1.0" not in (await client.get("/metrics")).text:
                await asyncio.sleep(0.05)
            small_server.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            ready = await client.get("/health/ready")
            refused = await client.post("/v1/completions", json={**body, "stream": False})
            return await asyncio.gather(*in_flight), ready, refused

    signalled = time.monotonic()
    streams, ready, refused = asyncio.run(scenario())
    rc = small_server.proc.wait(timeout=DRAIN_S + 30)
    assert rc == 0, small_server.log()[-3000:]
    assert time.monotonic() - signalled < DRAIN_S
    assert all(s.endswith("data: [DONE]") and s.count('"finish_reason":"length"') == 1 for s in streams)
    assert ready.status_code == 503 and ready.json()["status"] == "draining"
    assert refused.status_code == 503 and "retry-after" in refused.headers
    assert "drain finished" in small_server.log()
