"""Part 8, many twins on one replica: the same traffic spread over the base alone and over 1, 2 and 4 twins (each
request's `model` in turn), on the monolith with `twins:` and on `vllm serve --enable-lora --lora-modules ...`
with the same adapters and LoRA limits, side by side (ABBA, as every part); the base on a monolith with no twins
(LoRA off) is the reference for what a twin costs. Then a cold twin's first token: a twin already in a LoRA slot,
against one swapped into a slot from host memory (more twins than `engine.max_loras`), and on a monolith that
keeps only the slots' adapters in host memory (`engine.max_cpu_loras` = `max_loras`), one read from disk; beside
them what that server's /metrics says a swap cost (`monolith_twin_swap_time_to_first_token_seconds`).

The adapters are the demo twins of configs/twins.yaml (`monolith twins build`, trained once into data/adapters)."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from monolith.bench.load import closed_loop, summarize
from monolith.bench.peers import ROOT, Server, free_port, launch, start_monolith, vllm_engine_args, vllm_env
from monolith.config import Settings, load_settings
from monolith.training import Recipe, build_twins

TWINS_CONFIG = ROOT / "configs" / "twins.yaml"
MIXES = (0, 1, 2, 4)  # twins the traffic is spread over; 0: the base alone


def demo_twins(settings: Settings) -> tuple[Settings, dict[str, Path]]:
    """configs/twins.yaml's twins, their adapters built once (data/adapters), in the bench's data dir."""
    twins = load_settings(TWINS_CONFIG).model_copy(update={"data_dir": settings.data_dir})
    return twins, build_twins(twins, Recipe())


def twins_env(twins: Settings, adapters: dict[str, Path]) -> dict[str, str]:
    served = {name: {"adapter": str(adapters[name]), "author": twin.author} for name, twin in twins.twins.items()}
    cfg = twins.engine
    return {
        "MONOLITH_TWINS": json.dumps(served),
        "MONOLITH_ENGINE__MAX_LORAS": str(cfg.max_loras),
        "MONOLITH_ENGINE__MAX_LORA_RANK": str(cfg.max_lora_rank),
    }


def vllm_lora_args(twins: Settings, adapters: dict[str, Path], model_dir: Path) -> list[str]:
    """`vllm serve`'s flags for the same engine, adapters and LoRA limits as the monolith's twins."""
    cfg = twins.engine
    args = [*vllm_engine_args(twins, model_dir), "--enable-lora", "--max-loras", str(cfg.max_loras)]
    args += ["--max-lora-rank", str(cfg.max_lora_rank), "--max-cpu-loras", str(max(len(adapters), cfg.max_loras))]
    return [*args, "--lora-modules", *(f"{name}={path}" for name, path in adapters.items())]


def start_vllm_lora(twins: Settings, adapters: dict[str, Path], model_dir: Path, workdir: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", *vllm_lora_args(twins, adapters, model_dir)]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    return launch("vllm-lora", cmd, vllm_env(twins), workdir, port)


def spread(models: list[str], max_tokens: int):
    """Completion requests whose `model` takes each of `models` in turn; the same prompts for every mix."""

    def body(i: int) -> dict:
        return {
            "model": models[i % len(models)],
            "prompt": f"Request {i}. Write a paragraph about deploying language models.",
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    return body


def run_mix(base_url: str, models: list[str], concurrency: int, requests: int, max_tokens: int) -> dict:
    """One request per model first, not measured (a twin's first use), then the closed loop."""
    body = spread(models, max_tokens)
    asyncio.run(closed_loop(base_url, "/v1/completions", body, len(models), len(models)))
    samples, wall = asyncio.run(closed_loop(base_url, "/v1/completions", body, concurrency, requests))
    return summarize(samples, wall)


def first_token_s(client: httpx.Client, model: str) -> float:
    body = {"model": model, "prompt": "Say hello.", "max_tokens": 2, "temperature": 0.0, "stream": True}
    started = time.perf_counter()
    with client.stream("POST", "/v1/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"text"' in line:
                return time.perf_counter() - started
    raise RuntimeError(f"{model}: no token")


def cold_twin(base_url: str, base: str, names: list[str], slots: int, rounds: int) -> dict:
    """First-token times at idle: the base, a twin already in a slot, and a twin swapped in from host memory
    (the `slots` twins used just before it fill every slot)."""
    times: dict[str, list[float]] = {"base": [], "twin in a slot": [], "twin swapped into a slot": []}
    with httpx.Client(base_url=base_url, timeout=300) as client:
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order[:slots]:
                first_token_s(client, name)
            times["twin in a slot"].append(first_token_s(client, order[0]))
            times["twin swapped into a slot"].append(first_token_s(client, order[slots]))
            times["base"].append(first_token_s(client, base))
    return {what: round(statistics.median(values), 4) for what, values in times.items()}


def swap_means(metrics_text: str) -> dict[str, float]:
    """The mean first-token time of a swap, by where the adapter came from, as the server's /metrics has it."""
    sums: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "monolith_twin_swap_time_to_first_token_seconds":
            for sample in family.samples:
                if sample.name.endswith(("_sum", "_count")):
                    sums.setdefault(sample.labels["source"], {})[sample.name.rsplit("_", 1)[1]] = sample.value
    return {source: round(v["sum"] / v["count"], 4) for source, v in sums.items() if v.get("count")}


def cold_from_disk(
    config: Path, settings: Settings, model_dir: Path, work: Path, demo: tuple[Settings, dict[str, Path]]
) -> dict:
    """A twin swapped in when host memory holds only the slots' adapters: read from disk (vLLM's LRU)."""
    twins, adapters = demo
    env = twins_env(twins, adapters) | {"MONOLITH_ENGINE__MAX_CPU_LORAS": str(twins.engine.max_loras)}
    server = start_monolith(config, settings, model_dir, work, env)
    try:
        server.wait_ready("/health/ready")
        base, names = settings.engine.served_model_name, list(adapters)
        times = cold_twin(server.base_url, base, names, twins.engine.max_loras, 6)
        means = swap_means(httpx.get(f"{server.base_url}/metrics", timeout=30).text)
    finally:
        server.stop()
    out = {"twin read from disk": times["twin swapped into a slot"]}
    return out | {f"/metrics' mean swap from {source}": mean for source, mean in means.items()}


def measure(config: Path, settings: Settings, model_dir: Path, work: Path, requests: int, max_tokens: int) -> dict:
    twins, adapters = demo_twins(settings)
    names, base = list(adapters), settings.engine.served_model_name
    concurrency = settings.engine.max_num_seqs // 2
    servers: dict[str, Server] = {}
    try:
        servers["vllm serve --enable-lora"] = start_vllm_lora(twins, adapters, model_dir, work / "vllm-lora")
        servers["monolith"] = start_monolith(config, settings, model_dir, work / "twins", twins_env(twins, adapters))
        servers["monolith, no twins"] = start_monolith(config, settings, model_dir, work / "no-twins")
        servers["vllm serve --enable-lora"].wait_ready("/v1/models")
        servers["monolith"].wait_ready("/health/ready")
        servers["monolith, no twins"].wait_ready("/health/ready")
        rows = []
        for i, mix in enumerate(MIXES):
            models = names[:mix] if mix else [base]
            systems = ["vllm serve --enable-lora", "monolith"] + (["monolith, no twins"] if not mix else [])
            for system in systems if i % 2 == 0 else systems[::-1]:
                row = run_mix(servers[system].base_url, models, concurrency, requests, max_tokens)
                rows.append({"system": system, "twins": mix, "concurrency": concurrency, **row})
                print(json.dumps(rows[-1]), flush=True)
        cold = cold_twin(servers["monolith"].base_url, base, names, twins.engine.max_loras, 6)
    finally:
        for server in servers.values():
            server.stop()
    cold.update(cold_from_disk(config, settings, model_dir, work / "twins-disk", (twins, adapters)))
    return {
        "adapters": {name: str(path) for name, path in adapters.items()},
        "max_loras": twins.engine.max_loras,
        "max_tokens": max_tokens,
        "rows": rows,
        "cold_first_token_s": cold,
        "ratios": twin_ratios(rows),
    }


def twin_ratios(rows: list[dict]) -> list[dict]:
    """Per mix: the monolith's throughput over vllm serve's (goal >= 0.95), and over the base alone with no twins."""
    by = {(r["system"], r["twins"]): r for r in rows}
    alone = by.get(("monolith, no twins", 0))
    out = []
    for mix in MIXES:
        ours, theirs = by.get(("monolith", mix)), by.get(("vllm serve --enable-lora", mix))
        if not ours or not theirs:
            continue
        out.append(
            {
                "twins": mix,
                "throughput / vllm serve": round(ours["output_tokens_per_s"] / theirs["output_tokens_per_s"], 3),
                "ttft p50 / vllm serve": round(ours["ttft_p50_s"] / theirs["ttft_p50_s"], 3),
                "throughput / base with no twins": round(ours["output_tokens_per_s"] / alone["output_tokens_per_s"], 3)
                if alone
                else None,
            }
        )
    return out


def markdown(result: dict | None) -> list[str]:
    if not result:
        return []
    lines = [
        "",
        "## 8. Many twins on one replica",
        "",
        f"Completions of {result['max_tokens']} tokens at concurrency {result['rows'][0]['concurrency']}, each "
        f"request's `model` in turn over the twins (0: the base alone); `engine.max_loras` {result['max_loras']}, "
        "so 4 twins take turns in the slots. vllm serve has the same adapters and limits; `monolith, no twins` has "
        "LoRA off.",
        "",
        "| system | twins | req/s | output tok/s | TTFT p50 | TTFT p99 | e2e p50 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['system']} | {r['twins']} | {r['requests_per_s']} | {r['output_tokens_per_s']} | "
            f"{r['ttft_p50_s']} | {r['ttft_p99_s']} | {r['e2e_p50_s']} |"
        )
    lines += ["", "| twins | throughput / vllm serve | TTFT p50 / vllm serve | throughput / base with no twins |"]
    lines += ["| --- | --- | --- | --- |"]
    for r in result["ratios"]:
        lines.append(
            f"| {r['twins']} | {r['throughput / vllm serve']} | {r['ttft p50 / vllm serve']} | "
            f"{r['throughput / base with no twins']} |"
        )
    cold = result["cold_first_token_s"]
    lines += ["", "First token at idle (median s): " + ", ".join(f"{k} {v}" for k, v in cold.items()), ""]
    return lines
