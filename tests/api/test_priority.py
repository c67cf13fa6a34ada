"""A request's own `priority` (vLLM's field) on the real engine under the priority policy: bounded so that it
orders a request inside its lane and never past the real-time lane (a value outside 0..99 is a 400 naming it),
and n > 1 under priority scheduling, concurrent and at mixed priorities, does not take the engine down
(vllm-project/vllm#29747)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from monolith.admission import ASYNC, BATCH, REALTIME, engine_priority
from monolith.config import Settings
from tests.conftest import free_port
from tests.scripted import ScriptedEngine, ThreadedServer

QUESTION = [{"role": "user", "content": "Name three colours."}]


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/chat/completions", {"model": "twin", "messages": QUESTION, "max_tokens": 2}),
        ("/v1/completions", {"model": "twin", "prompt": "Colours:", "max_tokens": 2}),
        ("/v1/responses", {"model": "twin", "input": "Name three colours.", "max_output_tokens": 2}),
        ("/rag", {"query": "How do I deploy an LLM?", "max_tokens": 2}),
        ("/v1/async/chat/completions", {"model": "twin", "messages": QUESTION, "max_tokens": 2}),
    ],
)
@pytest.mark.parametrize("priority", [-1, 100, 2**40])
def test_a_priority_outside_the_lane_is_a_400_naming_it(
    http: httpx.Client, route: str, body: dict, priority: int
) -> None:
    response = http.post(route, json={**body, "priority": priority})
    assert response.status_code == 400 and response.json()["error"]["param"] == "priority", response.text


def test_n_2_at_mixed_priorities_under_load_answers_every_request(http: httpx.Client) -> None:
    def ask(i: int) -> httpx.Response:
        body = {"model": "twin", "messages": QUESTION, "max_tokens": 12, "n": 2 if i % 2 else 1, "priority": i % 5}
        return http.post("/v1/chat/completions", json=body)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(12)))
    assert [a.status_code for a in answers] == [200] * 12
    assert [len(a.json()["choices"]) for a in answers] == [2 if i % 2 else 1 for i in range(12)]
    assert http.get("/health/ready").status_code == 200, "the engine is still up"


def test_no_priority_a_client_can_ask_for_moves_a_request_past_an_earlier_lane() -> None:
    assert (
        engine_priority(REALTIME, 99)
        < engine_priority(ASYNC, 0)
        < engine_priority(ASYNC, 99)
        < engine_priority(BATCH, 0)
    )
    assert engine_priority(REALTIME, -5) == engine_priority(REALTIME, 0) and engine_priority(BATCH, 10**6) == 299


def test_a_priority_in_the_lane_is_served(http: httpx.Client) -> None:
    body = {"model": "twin", "messages": QUESTION, "max_tokens": 2, "priority": 99}
    assert http.post("/v1/chat/completions", json=body).status_code == 200


def test_under_first_come_first_served_a_priority_is_a_400_not_ignored(settings: Settings) -> None:
    fcfs = settings.model_copy(update={"scheduling": settings.scheduling.model_copy(update={"policy": "fcfs"})})
    with ThreadedServer(fcfs, ScriptedEngine(), free_port()) as server:
        base = {"model": "twin", "messages": QUESTION, "max_tokens": 2}
        refused = httpx.post(f"{server.base_url}/v1/chat/completions", json={**base, "priority": 3})
        rag = httpx.post(f"{server.base_url}/rag", json={"query": "hi", "priority": 1})
        plain = httpx.post(f"{server.base_url}/v1/chat/completions", json={**base, "priority": 0})
    assert refused.status_code == rag.status_code == 400
    assert refused.json()["error"]["param"] == rag.json()["error"]["param"] == "priority"
    assert plain.status_code == 200
