"""Part 8's measurement (many twins on one replica): the traffic spread over the twins asked, against the app on
loopback with a scripted engine (its per-model metrics count what each twin got); `vllm serve`'s LoRA flags as its
own parser takes them; the ratios and the table."""

from __future__ import annotations

from pathlib import Path

import httpx

from monolith.bench.peers import ROOT
from monolith.bench.twins import cold_twin, markdown, run_mix, swap_means, twin_ratios, vllm_lora_args
from monolith.config import Settings, TwinSettings, load_settings
from tests.api.test_health import metric_samples
from tests.bench.test_peers import _serve_parser
from tests.conftest import free_port
from tests.scripted import ScriptedEngine, ThreadedServer


def generations(base_url: str) -> dict[str, float]:
    samples = metric_samples(httpx.get(f"{base_url}/metrics").text).get("monolith_model_generations_total", [])
    return {s.labels["model"]: s.value for s in samples}


def test_the_traffic_is_spread_evenly_over_the_twins_asked_and_the_cold_twin_is_timed(settings: Settings) -> None:
    twins = {name: TwinSettings(adapter=f"adapters/{name}") for name in ("ada", "jonas", "priya")}
    engine = ScriptedEngine(capacity=4, gap_s=0.005)
    with ThreadedServer(settings.model_copy(update={"twins": twins}), engine, free_port()) as server:
        before = generations(server.base_url)  # the registry is the process's: other tests counted too
        row = run_mix(server.base_url, ["ada", "jonas"], concurrency=2, requests=8, max_tokens=3)
        after = generations(server.base_url)
        made = {model: after[model] - before.get(model, 0) for model in after if after[model] > before.get(model, 0)}
        assert made == {"ada": 5, "jonas": 5}, "one warm-up each, then 8 in turns"
        assert row["ok"] == 8 and row["output_tokens_per_s"] > 0
        cold = cold_twin(server.base_url, "twin", ["ada", "jonas", "priya"], slots=2, rounds=3)
        means = swap_means(httpx.get(f"{server.base_url}/metrics").text)
    assert set(cold) == {"base", "twin in a slot", "twin swapped into a slot"} and all(v > 0 for v in cold.values())
    assert set(means) == {"host", "disk"} and all(v > 0 for v in means.values()), "one slot: each twin swaps in"


def test_vllm_serve_takes_the_twins_adapters_and_limits_as_flags(tmp_path: Path) -> None:
    twins = load_settings(ROOT / "configs" / "twins.yaml")
    adapters = {name: tmp_path / name for name in twins.twins}
    args = _serve_parser().parse_args(vllm_lora_args(twins, adapters, tmp_path / "model"))
    assert args.enable_lora and args.max_loras == twins.engine.max_loras == 2
    assert args.max_lora_rank == twins.engine.max_lora_rank and args.max_cpu_loras == 4
    assert {m.name: m.path for m in args.lora_modules} == {name: str(path) for name, path in adapters.items()}


def test_ratios_compare_each_mix_with_vllm_serve_and_the_base_with_no_twins() -> None:
    def row(system: str, twins: int, tok_s: float, ttft: float) -> dict:
        return {
            "system": system,
            "twins": twins,
            "concurrency": 8,
            "requests_per_s": 1,
            "output_tokens_per_s": tok_s,
        } | {"ttft_p50_s": ttft, "ttft_p99_s": ttft, "e2e_p50_s": 1.0}

    rows = [
        row("vllm serve --enable-lora", 0, 100, 0.2),
        row("monolith", 0, 95, 0.25),
        row("monolith, no twins", 0, 120, 0.2),
        row("vllm serve --enable-lora", 2, 80, 0.3),
        row("monolith", 2, 80, 0.3),
    ]
    ratios = twin_ratios(rows)
    assert ratios == [
        {
            "twins": 0,
            "throughput / vllm serve": 0.95,
            "ttft p50 / vllm serve": 1.25,
            "throughput / base with no twins": 0.792,
        },
        {
            "twins": 2,
            "throughput / vllm serve": 1.0,
            "ttft p50 / vllm serve": 1.0,
            "throughput / base with no twins": 0.667,
        },
    ]
    table = "\n".join(
        markdown(
            {"rows": rows, "ratios": ratios, "max_tokens": 32, "max_loras": 2, "cold_first_token_s": {"base": 0.1}}
        )
    )
    assert "| monolith | 2 | 1 | 80 |" in table and "| 2 | 1.0 | 1.0 | 0.667 |" in table and "base 0.1" in table
