"""The RAG tax measurement against the real server: /rag returns its final prompt, and the plain completion of
that prompt generates as many tokens."""

from __future__ import annotations

import httpx

from monolith.bench.report import tax_markdown
from monolith.bench.tax import measure
from tests.conftest import ServerProcess


def test_rag_returns_its_final_prompt_as_token_ids_only_when_asked(http: httpx.Client, tokenizer) -> None:
    body = {"query": "How do I deploy an LLM?", "max_tokens": 4, "temperature": 0.0}
    plain = http.post("/rag", json=body).json()
    assert plain["prompt_token_ids"] is None
    asked = http.post("/rag", json={**body, "return_token_ids": True}).json()
    ids = asked["prompt_token_ids"]
    assert len(ids) == asked["usage"]["prompt_tokens"]
    prompt = tokenizer.decode(ids)
    assert "How do I deploy an LLM?" in prompt and asked["sources"][0]["content"][:40] in prompt


def test_the_tax_is_measured_on_the_same_prompt_and_length(server: ServerProcess) -> None:
    result = measure(server.base_url, "twin", max_tokens=8, rounds=2)
    assert result["rounds"] == 2 and result["rag_mean_s"] > 0 and result["plain_mean_s"] > 0
    assert abs(result["tax"] - result["rag_mean_s"] / result["plain_mean_s"]) < 0.01  # the means are rounded
    assert {"embed", "search", "prompt"} <= set(result["step_ms_mean"])
    table = "\n".join(tax_markdown({"defaults": result}))
    assert f"| defaults | 2 | 8 | {result['rag_mean_s']} | {result['plain_mean_s']} | {result['tax']} |" in table
