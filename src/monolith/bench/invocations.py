"""Part 7, SageMaker's /invocations against the direct route: the same requests, one at a time, in turns (the
order flipping every round). /invocations reads the body twice (once to choose the API by its shape, once as
that API's request) and answers a TGI payload as a list; overhead = mean /invocations latency / mean direct."""

from __future__ import annotations

import statistics
import time

import httpx


def cases(model: str, max_tokens: int) -> dict[str, tuple[str, dict]]:
    """name -> (direct route, body): the body goes unchanged to both routes."""
    messages = [{"role": "user", "content": "Explain continuous batching to an engineer."}]
    return {
        "chat": ("/v1/chat/completions", {"model": model, "messages": messages, "max_tokens": max_tokens,
                                          "temperature": 0.0, "ignore_eos": True}),
        "tgi": ("/generate", {"inputs": "Continuous batching means", "parameters": {"max_new_tokens": max_tokens}}),
    }  # fmt: skip


def measure(base_url: str, model: str, max_tokens: int, rounds: int) -> dict:
    timings: dict[str, dict[str, list[float]]] = {}
    with httpx.Client(base_url=base_url, timeout=600) as client:

        def timed(path: str, body: dict) -> float:
            started = time.perf_counter()
            client.post(path, json=body).raise_for_status()
            return time.perf_counter() - started

        for name, (direct, body) in cases(model, max_tokens).items():
            timed(direct, body)  # unmeasured: the prompt into the prefix cache for both sides alike
            seen = timings.setdefault(name, {"direct": [], "invocations": []})
            for i in range(rounds):
                order = ("direct", "invocations") if i % 2 == 0 else ("invocations", "direct")
                for side in order:
                    seen[side].append(timed(direct if side == "direct" else "/invocations", body))
    return {
        "rounds": rounds,
        "max_tokens": max_tokens,
        "cases": {
            name: {
                "direct_mean_s": round(statistics.fmean(t["direct"]), 4),
                "invocations_mean_s": round(statistics.fmean(t["invocations"]), 4),
                "overhead": round(statistics.fmean(t["invocations"]) / statistics.fmean(t["direct"]), 3),
            }
            for name, t in timings.items()
        },
    }


def markdown(result: dict | None) -> list[str]:
    if not result:
        return []
    lines = [
        "",
        f"SageMaker's /invocations against the direct route ({result['rounds']} rounds, {result['max_tokens']} "
        "tokens, one request at a time, in turns):",
        "",
        "| body | direct route | direct mean s | /invocations mean s | overhead |",
        "| --- | --- | --- | --- | --- |",
    ]
    routes = {"chat": "/v1/chat/completions", "tgi": "/generate"}
    for name, row in result["cases"].items():
        lines.append(
            f"| {name} | {routes.get(name, '')} | {row['direct_mean_s']} | {row['invocations_mean_s']} "
            f"| {row['overhead']} |"
        )
    return lines
