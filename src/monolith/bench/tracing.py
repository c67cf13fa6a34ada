"""Part 9, what tracing costs: the same traffic on a monolith with no OTEL_* variable (tracing off: nothing
installed) and on one that traces every request (`always_on`) and exports to a real OTLP receiver on loopback,
side by side (ABBA). Streamed completions at a closed-loop concurrency, and /rag, whose steps are spans too.
Goals: throughput with tracing on >= 0.97x off, TTFT p50 <= 1.05x."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from monolith.bench.load import closed_loop, summarize
from monolith.bench.otlp import OtlpReceiver
from monolith.bench.peers import Server, start_monolith
from monolith.config import Settings

ROUTES = ("/v1/completions", "/rag")
SYSTEMS = ("tracing off", "tracing on")


def bodies(model: str, max_tokens: int):
    def completion(i: int) -> dict:
        return {
            "model": model,
            "prompt": f"Request {i}. Explain tracing to an engineer who deploys language models.",
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def rag(i: int) -> dict:
        return {"query": f"How do I deploy an LLM? ({i})", "max_tokens": max_tokens, "temperature": 0.0, "stream": True}

    return {"/v1/completions": completion, "/rag": rag}


def measure(
    config: Path, settings: Settings, model_dir: Path, work: Path, requests: int, max_tokens: int, rounds: int
) -> dict:
    receiver = OtlpReceiver()
    # The SDK's own batching (an export every 5 s), as deployed; the tests' 100 ms would measure the receiver.
    traced = {k: v for k, v in receiver.env().items() if k != "OTEL_BSP_SCHEDULE_DELAY"}
    traced |= {"OTEL_TRACES_SAMPLER": "always_on", "OTEL_SERVICE_NAME": "monolith-bench"}
    servers: dict[str, Server] = {}
    concurrency = {"/v1/completions": settings.engine.max_num_seqs // 2, "/rag": 2}
    body = bodies(settings.engine.served_model_name, max_tokens)
    rows: list[dict] = []
    try:
        servers["tracing off"] = start_monolith(config, settings, model_dir, work / "off")
        servers["tracing on"] = start_monolith(config, settings, model_dir, work / "on", traced)
        for server in servers.values():
            server.wait_ready("/health/ready")
        for route in ROUTES:
            for server in servers.values():  # first use, not measured
                asyncio.run(closed_loop(server.base_url, route, body[route], 1, 1))
            for i in range(rounds):
                for system in SYSTEMS if i % 2 == 0 else SYSTEMS[::-1]:
                    c = concurrency[route]
                    samples, wall = asyncio.run(closed_loop(servers[system].base_url, route, body[route], c, requests))
                    rows.append({"system": system, "route": route, "round": i, "concurrency": c})
                    rows[-1] |= summarize(samples, wall)
                    print(json.dumps(rows[-1]), flush=True)
    finally:
        for server in servers.values():
            server.stop()
        receiver.close()
    return {
        "max_tokens": max_tokens,
        "rounds": rounds,
        "rows": rows,
        "spans_exported": len(receiver.spans),
        "ratios": tracing_ratios(rows),
    }


def tracing_ratios(rows: list[dict]) -> list[dict]:
    """Per route, over every round: tracing on's output tokens/s and TTFT p50 over tracing off's."""
    out = []
    for route in ROUTES:
        sums = {
            system: [r for r in rows if r["route"] == route and r["system"] == system and r["ok"]] for system in SYSTEMS
        }
        if not all(sums.values()):
            continue
        off, on = (
            (sum(r["output_tokens_per_s"] for r in sums[s]), sum(r["ttft_p50_s"] for r in sums[s])) for s in SYSTEMS
        )
        out.append(
            {
                "route": route,
                "throughput on / off": round(on[0] / off[0], 3),
                "ttft p50 on / off": round(on[1] / off[1], 3),
            }
        )
    return out


def markdown(result: dict | None) -> list[str]:
    if not result:
        return []
    lines = [
        "",
        "## 9. What tracing costs",
        "",
        f"The same traffic on a monolith with no OTEL_* variable and on one tracing every request (`always_on`) "
        f"to an OTLP receiver on loopback ({result['spans_exported']} spans exported), {result['rounds']} rounds "
        f"each, in turns; {result['max_tokens']} tokens. Goals: throughput on/off >= 0.97, TTFT p50 on/off <= 1.05.",
        "",
        "| system | route | round | req/s | output tok/s | TTFT p50 | TTFT p99 | e2e p50 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['system']} | {r['route']} | {r['round']} | {r['requests_per_s']} | {r['output_tokens_per_s']} | "
        f"{r['ttft_p50_s']} | {r['ttft_p99_s']} | {r['e2e_p50_s']} |"
        for r in result["rows"]
    ]
    lines += ["", "| route | throughput on / off | TTFT p50 on / off |", "| --- | --- | --- |"]
    lines += [f"| {r['route']} | {r['throughput on / off']} | {r['ttft p50 on / off']} |" for r in result["ratios"]]
    return [*lines, ""]
