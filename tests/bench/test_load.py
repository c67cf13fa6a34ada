"""The benchmark's load generator, against the app on loopback with a scripted engine."""

from __future__ import annotations

import asyncio

from monolith.bench.load import Sample, closed_loop, open_loop, percentile, summarize
from monolith.bench.mixed import Traffic
from monolith.bench.report import markdown, ratios
from monolith.bench.run import Profile, completion_body, interleaved
from monolith.config import Settings
from tests.conftest import free_port
from tests.scripted import ScriptedEngine, ThreadedServer


def test_closed_loop_sends_every_request_and_measures_ttft_and_tokens(settings: Settings) -> None:
    engine = ScriptedEngine(capacity=4, gap_s=0.02)
    with ThreadedServer(settings, engine, free_port()) as server:
        samples, wall = asyncio.run(closed_loop(server.base_url, "/v1/completions", completion_body("twin", 5), 4, 10))
    summary = summarize(samples, wall)
    assert summary["requests"] == summary["ok"] == 10 and engine.started == 10
    assert all(s.output_tokens == 5 for s in samples)
    # the first token comes after one 20 ms gap; the whole answer after five
    assert 0.02 <= summary["ttft_p50_s"] < summary["e2e_p50_s"]
    assert summary["output_tokens_per_s"] == round(50 / wall, 2)


def test_open_loop_counts_refusals_apart_from_errors(settings: Settings) -> None:
    engine = ScriptedEngine(capacity=1, gap_s=0.05)
    limited = settings.model_copy(update={"admission": settings.admission.model_copy(update={"max_waiting": 1})})
    with ThreadedServer(limited, engine, free_port()) as server:
        samples, wall = asyncio.run(
            open_loop(server.base_url, "/v1/completions", completion_body("twin", 10), rate=50, requests=12, seed=1)
        )
    summary = summarize(samples, wall)
    assert summary["requests"] == 12 and summary["errors"] == 0
    assert summary["rejected_429"] > 0 and summary["ok"] == 12 - summary["rejected_429"]


def test_percentiles_and_ratios() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0 and percentile([], 50) is None
    rows = [
        {"system": s, "load": "closed c=1", **summarize([Sample(200, t, t * 2, 10)], wall)}
        for s, t, wall in (("monolith", 0.5, 2.0), ("vllm", 0.4, 1.6))
    ]
    (ratio,) = ratios(rows)
    assert ratio["compare"] == "monolith / vllm"
    assert ratio["throughput_ratio"] == 0.8 and ratio["ttft_p50_ratio"] == 1.25
    result = {
        "profile_name": "quick",
        "machine": "test",
        "model": "m",
        "max_tokens": 10,
        "profile": vars(
            Profile((1,), 1, 1, 10, 1.0, 1, (1,), 1, 10, 0, 0, 0, 0, 0, (1,), 1, 10, Traffic(1, 1, 1, 1, 1, 1, 1), 1, 1)
        ),
        "rows": [r | {"route": "/v1/completions", "concurrency": 1} for r in rows],
        "ratios": [ratio],
        "batch": None,
    }
    table = markdown(result)
    assert "| monolith / vllm | closed c=1 | 0.8 | 1.25 |" in table
    assert "not run in this profile" in table


def test_a_stream_that_fails_after_its_200_counts_as_an_error_with_its_reason(settings: Settings) -> None:
    engine = ScriptedEngine(capacity=2, gap_s=0.05)
    short = settings.model_copy(update={"server": settings.server.model_copy(update={"request_timeout_s": 0.3})})
    with ThreadedServer(short, engine, free_port()) as server:
        samples, wall = asyncio.run(closed_loop(server.base_url, "/v1/completions", completion_body("twin", 40), 2, 2))
    summary = summarize(samples, wall)
    assert summary["errors"] == 2 and summary["ok"] == 0
    assert all(s.ttft_s is not None for s in samples), "the stream had started before it failed"
    (example,) = summary["error_examples"]
    assert example.startswith("599: ") and "timeout" in example


def test_interleaved_runs_each_step_on_both_sides_flipping_the_order() -> None:
    calls: list[str] = []

    class Recorder:
        def __init__(self, name: str) -> None:
            self.system = name

        def warm(self) -> None:
            calls.append(f"warm {self.system}")

    def step(level: int):
        def run(side: Recorder) -> dict:
            calls.append(f"{side.system}{level}")
            return {"system": side.system, "level": level}

        return run

    rows = interleaved((Recorder("a"), Recorder("b")), [step(1), step(2), step(3)])  # type: ignore[arg-type]
    assert calls == ["warm a", "warm b", "a1", "b1", "b2", "a2", "a3", "b3"]
    assert len(rows) == 6
