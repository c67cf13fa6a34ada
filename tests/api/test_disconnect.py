"""A client that goes away frees its engine slot: streamed or not."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.api.test_health import gauge, wait_idle
from tests.conftest import ServerProcess

# Event-driven: the wait ends as soon as the gauge reads `value`; the bound only limits how long a failure takes
# to show (an abort lands within milliseconds; a busy 2-core CI box can stall a poll for seconds).
SETTLE_S = 10.0


def wait_for_gauge(http: httpx.Client, name: str, value: float, within_s: float = SETTLE_S) -> float:
    deadline = time.monotonic() + within_s
    current = gauge(http, name)
    while current != value and time.monotonic() < deadline:
        time.sleep(0.05)
        current = gauge(http, name)
    return current


def test_client_disconnect_aborts_the_generation(server: ServerProcess, http: httpx.Client) -> None:
    wait_idle(http)
    request = {
        "model": "twin",
        "prompt": "Write a long story about a robot.",
        "max_tokens": 1000,
        "stream": True,
        "temperature": 0.8,
        "ignore_eos": True,
    }
    with (
        httpx.Client(base_url=server.base_url, timeout=60) as client,
        client.stream("POST", "/v1/completions", json=request) as response,
    ):
        lines = response.iter_lines()
        for _ in range(3):
            next(lines)
        assert gauge(http, "monolith_requests_running") == 1
    # leaving the block closed the connection mid-stream
    assert wait_for_gauge(http, "monolith_requests_running", 0) == 0
    # A short request makes the engine step and report again: the aborted one must be gone from it.
    http.post("/v1/completions", json={"model": "twin", "prompt": "Hi", "max_tokens": 2})
    assert gauge(http, "monolith_engine_running") == 0
    assert gauge(http, "monolith_queue_depth") == 0


def test_client_that_stops_waiting_for_a_json_answer_aborts_it(server: ServerProcess, http: httpx.Client) -> None:
    wait_idle(http)
    request = {"model": "twin", "prompt": "Write a long story.", "max_tokens": 1000, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout), httpx.Client(base_url=server.base_url, timeout=3) as client:
        client.post("/v1/completions", json=request)
    assert wait_for_gauge(http, "monolith_requests_running", 0) == 0
    http.post("/v1/completions", json={"model": "twin", "prompt": "Hi", "max_tokens": 2})
    assert gauge(http, "monolith_engine_running") == 0
