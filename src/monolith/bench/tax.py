"""The RAG tax: what a /rag request costs over a plain completion of the very prompt it ends with.

For each question, /rag answers at temperature 0 and returns its final prompt as token ids; then
/v1/completions generates from those ids as many tokens as the answer had (ignore_eos). Both at concurrency 1,
in turns, the order flipping every question. tax = mean /rag latency / mean plain latency: 1.0 would mean that
self-query, expansion, embedding, search and prompt building cost nothing.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import httpx

QUESTIONS = [
    "How do I deploy an LLM?",
    "What does Tomás Reyes say about reranking?",
    "Why is CPU utilisation a poor autoscaling signal?",
    "How does continuous batching help throughput?",
    "What is the best recipe for sourdough bread?",
    "How should I evaluate a fine-tuned model?",
]


def measure(base_url: str, model: str, max_tokens: int, rounds: int, rag: dict[str, Any] | None = None) -> dict:
    """`rag`: request fields over the server's defaults (`{"expand": true}` measures expansion's tax). Each
    round first asks /rag once, unmeasured: that gives the prompt and the answer's length, and leaves both
    prompts in vLLM's prefix cache, so the two measured calls that follow meet the same warm cache."""
    rag_s: list[float] = []
    plain_s: list[float] = []
    steps: dict[str, list[float]] = {}
    with httpx.Client(base_url=base_url, timeout=600) as client:

        def timed(path: str, body: dict) -> tuple[dict, float]:
            started = time.perf_counter()
            response = client.post(path, json=body)
            response.raise_for_status()
            return response.json(), time.perf_counter() - started

        for i in range(rounds):
            question = QUESTIONS[i % len(QUESTIONS)]
            rag_body = {"query": question, "max_tokens": max_tokens, "temperature": 0.0, **(rag or {})}
            first, _ = timed("/rag", {**rag_body, "return_token_ids": True})
            plain_body = {
                "model": model,
                "prompt": first["prompt_token_ids"],
                "max_tokens": max(1, first["usage"]["completion_tokens"]),
                "temperature": 0.0,
                "ignore_eos": True,  # exactly the answer's length
            }
            for call in ("rag", "plain") if i % 2 == 0 else ("plain", "rag"):
                if call == "rag":
                    answer, seconds = timed("/rag", rag_body)
                    rag_s.append(seconds)
                    for step, ms in answer["timings_ms"].items():
                        steps.setdefault(step, []).append(ms)
                else:
                    plain_s.append(timed("/v1/completions", plain_body)[1])
    return {
        "rounds": rounds,
        "max_tokens": max_tokens,
        "rag_fields": rag or {},
        "rag_mean_s": round(statistics.fmean(rag_s), 3),
        "plain_mean_s": round(statistics.fmean(plain_s), 3),
        "tax": round(statistics.fmean(rag_s) / statistics.fmean(plain_s), 3),
        "step_ms_mean": {step: round(statistics.fmean(v), 1) for step, v in sorted(steps.items())},
    }
