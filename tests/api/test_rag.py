"""POST /rag against the real server: answers with sources, SSE, per-request switches, author filter."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
CORPUS_LINKS = {json.loads(line)["link"] for line in (ROOT / "corpus" / "sample.jsonl").read_text().splitlines()}


def sse_events(response: httpx.Response) -> list[dict | str]:
    events: list[dict | str] = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def test_rag_answers_with_sources_from_the_sample_corpus(http: httpx.Client) -> None:
    response = http.post("/rag", json={"query": "How do I deploy an LLM?", "max_tokens": 48})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"].strip()
    assert body["sources"], "no sources returned"
    assert {s["link"] for s in body["sources"]} <= CORPUS_LINKS
    assert {s["collection"] for s in body["sources"]} <= {
        "embedded_articles",
        "embedded_posts",
        "embedded_repositories",
    }
    assert all(s["content"] and s["author_full_name"] for s in body["sources"])
    assert 0 < body["usage"]["completion_tokens"] <= 48
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert body["queries"][0] == "How do I deploy an LLM?"
    assert response.headers["x-request-id"] == body["request_id"]
    assert {"embed", "search", "prompt"} <= set(body["timings_ms"])


def test_rag_honours_k_and_switches_off_expansion_and_self_query(http: httpx.Client) -> None:
    query = "What is continuous batching?"
    body = http.post(
        "/rag", json={"query": query, "k": 2, "max_tokens": 8, "expand": False, "self_query": False}
    ).json()
    assert len(body["sources"]) == 2
    assert body["queries"] == [query]
    assert body["author_filter"] is None
    assert "expand" not in body["timings_ms"] and "self_query" not in body["timings_ms"]


def test_rag_filters_on_author_named_in_query(http: httpx.Client) -> None:
    body = http.post(
        "/rag", json={"query": "What does Tomás Reyes say about reranking?", "max_tokens": 8, "expand": False}
    ).json()
    assert body["author_filter"] == "Tomás Reyes"
    assert body["sources"]
    assert {s["author_full_name"] for s in body["sources"]} == {"Tomás Reyes"}


def test_rag_streams_deltas_then_a_final_event_with_sources_and_usage(http: httpx.Client) -> None:
    request = {"query": "How should I autoscale LLM servers?", "max_tokens": 24, "stream": True}
    with http.stream("POST", "/rag", json=request) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    final = events[-2]
    deltas = [e for e in events[:-2] if isinstance(e, dict)]
    assert deltas and all(e["type"] == "delta" for e in deltas)
    assert "".join(e["text"] for e in deltas).strip()
    assert final["type"] == "final"
    assert final["sources"] and {s["link"] for s in final["sources"]} <= CORPUS_LINKS
    assert 0 < final["usage"]["completion_tokens"] <= 24


def test_a_question_the_corpus_cannot_answer_gets_no_sources_and_says_so(http: httpx.Client) -> None:
    body = http.post("/rag", json={"query": "What is the best recipe for sourdough bread?", "max_tokens": 8}).json()
    assert body["sources"] == [] and "relevance floor" in body["notice"]
    assert body["answer"].strip() and body["author_filter"] is None
    chat = http.post(
        "/v1/chat/completions",
        json={"model": "twin-rag", "messages": [{"role": "user", "content": "How do I repot an orchid?"}]},
    ).json()
    assert chat["sources"] == [] and "relevance floor" in chat["rag_notice"]


def test_expansion_is_off_by_default_and_on_when_asked(http: httpx.Client) -> None:
    query = "How should I autoscale LLM servers?"
    default = http.post("/rag", json={"query": query, "max_tokens": 2}).json()
    assert default["queries"] == [query] and "expand" not in default["timings_ms"]
    asked = http.post("/rag", json={"query": query, "max_tokens": 2, "expand": True}).json()
    assert asked["queries"][0] == query and "expand" in asked["timings_ms"]
    assert len({q.lower() for q in asked["queries"]}) == len(asked["queries"]), "no alternative repeats another"
