"""A load generator with fixed seeds: closed loop at a concurrency, or open loop at a Poisson rate.

Every request streams, so time to first token is measured at the first content frame; output tokens
come from the final usage frame (OpenAI routes) or the final event (/rag).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from httpx_sse import aconnect_sse

Body = Callable[[int], dict]


# What the benchmark's prompts are about (one per request, in turn): the same prompts on every system.
TOPICS = ["KV caches", "batching", "quantization", "RAG", "embeddings", "autoscaling", "LoRA", "streaming"]


@dataclass(frozen=True)
class Sample:
    status: int
    ttft_s: float | None
    e2e_s: float
    output_tokens: int
    retrieval_s: float | None = None  # /rag only: embed + search, from the final event's timings
    error: str | None = None  # why a request failed: the answer's body, an error frame or the transport error


async def one(client: httpx.AsyncClient, path: str, body: dict) -> Sample:
    started = time.perf_counter()
    ttft = None
    tokens = 0
    retrieval = None
    try:
        async with aconnect_sse(client, "POST", path, json=body) as events:
            response = events.response
            if response.status_code != 200:
                detail = (await response.aread()).decode(errors="replace")[:300]
                return Sample(response.status_code, None, time.perf_counter() - started, 0, error=detail)
            async for event in events.aiter_sse():
                if event.data == "[DONE]":
                    continue
                frame = json.loads(event.data)
                if frame.get("error") or frame.get("type") == "error":
                    # A stream that fails after its 200 header reports the failure in a frame.
                    return Sample(599, ttft, time.perf_counter() - started, tokens, error=event.data[:300])
                if ttft is None and _has_text(frame):
                    ttft = time.perf_counter() - started
                if frame.get("usage"):
                    tokens = frame["usage"]["completion_tokens"]
                timings = frame.get("timings_ms")
                if timings:
                    retrieval = (timings.get("embed", 0) + timings.get("search", 0)) / 1000
    except httpx.HTTPError as exc:
        return Sample(0, None, time.perf_counter() - started, 0, error=f"{type(exc).__name__}: {exc}"[:300])
    return Sample(200, ttft, time.perf_counter() - started, tokens, retrieval)


def _has_text(frame: dict) -> bool:
    if frame.get("type") == "delta":
        return bool(frame.get("text"))
    choices = frame.get("choices", [])
    return any(c.get("text") or (c.get("delta") or {}).get("content") for c in choices)


async def closed_loop(base_url: str, path: str, body: Body, concurrency: int, requests: int) -> tuple[list, float]:
    """`concurrency` clients, each sending its next request as soon as the last one finished."""
    counter = iter(range(requests))
    samples: list[Sample] = []
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as client:

        async def client_loop() -> None:
            for i in counter:
                samples.append(await one(client, path, body(i)))

        started = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        return samples, time.perf_counter() - started


async def open_loop(base_url: str, path: str, body: Body, rate: float, requests: int, seed: int = 0) -> tuple:
    """Requests arrive as a Poisson process at `rate` per second, whether or not earlier ones finished."""
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=httpx.Limits(max_connections=None)) as client:
        started = time.perf_counter()
        tasks = []
        for i in range(requests):
            tasks.append(asyncio.create_task(one(client, path, body(i))))
            await asyncio.sleep(rng.expovariate(rate))
        samples = await asyncio.gather(*tasks)
        return list(samples), time.perf_counter() - started


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[min(98, max(0, int(q) - 1))]


def summarize(samples: list[Sample], wall_s: float) -> dict:
    ok = [s for s in samples if s.status == 200]
    ttft = [s.ttft_s for s in ok if s.ttft_s is not None]
    e2e = [s.e2e_s for s in ok]
    retrieval = [s.retrieval_s / s.e2e_s for s in ok if s.retrieval_s is not None and s.e2e_s > 0]

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    return {
        "requests": len(samples),
        "ok": len(ok),
        "errors": sum(s.status not in (200, 429) for s in samples),
        "rejected_429": sum(s.status == 429 for s in samples),
        "wall_s": round(wall_s, 2),
        "requests_per_s": round(len(ok) / wall_s, 3),
        "output_tokens_per_s": round(sum(s.output_tokens for s in ok) / wall_s, 2),
        "ttft_p50_s": r(percentile(ttft, 50)),
        "ttft_p99_s": r(percentile(ttft, 99)),
        "e2e_p50_s": r(percentile(e2e, 50)),
        "e2e_p99_s": r(percentile(e2e, 99)),
        "retrieval_share_p50": r(statistics.median(retrieval)) if retrieval else None,
        "error_examples": sorted({f"{s.status}: {s.error}" for s in samples if s.status != 200})[:3],
    }
