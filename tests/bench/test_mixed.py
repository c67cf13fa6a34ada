"""Part 6's measurement (mixed load), against the app on loopback with a scripted engine of two slots: the
backlog as concurrent requests holds the slots, so real-time first tokens wait, and the figures say so."""

from __future__ import annotations

import asyncio

import pytest

from monolith.bench.mixed import (
    JobCallbacks,
    Mode,
    Run,
    Streamed,
    Traffic,
    markdown,
    measure,
    ratios,
    schedule,
    summarize,
)
from monolith.config import Settings
from tests.conftest import free_port
from tests.scripted import ScriptedEngine, ThreadedServer

TRAFFIC = Traffic(
    realtime_rate=20.0,
    realtime_requests=4,
    realtime_max_tokens=3,
    jobs=2,
    job_max_tokens=30,
    batch_lines=1,
    batch_max_tokens=20,
    head_start_s=0.1,
)


def test_a_backlog_on_a_first_come_engine_delays_real_time_and_its_tokens_are_counted(settings: Settings) -> None:
    engine = ScriptedEngine(capacity=2, gap_s=0.02)
    with ThreadedServer(settings, engine, free_port()) as server:
        floor = asyncio.run(measure("peer", server.base_url, "twin", TRAFFIC, mode="floor"))
        mixed = asyncio.run(measure("peer", server.base_url, "twin", TRAFFIC, mode="mixed"))
    assert [s.status for s in floor.samples + mixed.samples] == [200] * 8
    assert all(len(s.gaps_s) == 2 for s in floor.samples), "three tokens: a first, then two gaps"
    assert mixed.background_tokens == 2 * 30 + 20 and mixed.background_failures == 0
    # Two slots, both held by 30-token answers for ~0.6 s: a real-time request waits for one to finish.
    assert max(s.ttft_s or 0 for s in mixed.samples) > 4 * max(s.ttft_s or 0 for s in floor.samples)
    assert mixed.drain_s >= 0.6


def test_the_monolith_gets_its_backlog_as_async_jobs_and_a_batch_and_every_token_is_counted(
    settings: Settings,
) -> None:
    engine = ScriptedEngine(capacity=4, gap_s=0.005)
    # As the bench starts a monolith (peers.service_env): its jobs call the bench back on loopback.
    callbacks = settings.callbacks.model_copy(update={"allow": ["127.0.0.1"]})
    with ThreadedServer(settings.model_copy(update={"callbacks": callbacks}), engine, free_port(), jobs=True) as server:
        alone = asyncio.run(asyncio.wait_for(measure("monolith", server.base_url, "twin", TRAFFIC, "background"), 60))
    assert alone.background_failures == 0
    assert (
        alone.background_tokens
        == TRAFFIC.jobs * TRAFFIC.job_max_tokens + TRAFFIC.batch_lines * TRAFFIC.batch_max_tokens
    )
    assert engine.finished == TRAFFIC.jobs + TRAFFIC.batch_lines, "each job and line answered once"
    assert alone.drain_s >= TRAFFIC.job_max_tokens * 0.005


def test_rounds_are_pooled_and_each_system_is_compared_with_its_floor_and_the_peer() -> None:
    def run(system: str, mode: Mode, ttft: float, gap: float, tokens: int = 0, drain: float = 0.0) -> Run:
        samples = [] if mode == "background" else [Streamed(200, ttft, [gap, gap], 1.0, 3)]
        return Run(system, mode, samples, tokens, 0, drain)

    runs = [
        run("monolith", "floor", 0.1, 0.05),
        run("vllm", "floor", 0.1, 0.05),
        run("monolith", "mixed", 0.2, 0.1, tokens=100, drain=10.0),
        run("vllm", "mixed", 0.4, 0.1, tokens=100, drain=5.0),
        run("vllm", "mixed", 0.4, 0.1, tokens=100, drain=5.0),
        run("monolith", "mixed", 0.2, 0.1, tokens=100, drain=10.0),
        run("monolith", "background", 0, 0, tokens=100, drain=4.0),
        run("vllm", "background", 0, 0, tokens=100, drain=5.0),
    ]
    rows = summarize(runs)
    monolith = next(r for r in rows if r["system"] == "monolith" and r["mode"] == "mixed")
    assert monolith["rounds"] == 2 and monolith["background_tok_s"] == 10.0 and monolith["drain_s"] == 10.0
    compared = {r["system"]: r for r in ratios(rows)}
    assert compared["monolith"] == {
        "system": "monolith",
        "ttft_p99_vs_floor": 2.0,
        "itl_p99_vs_floor": 2.0,
        "ttft_p99_vs_vllm": 0.5,
        "goodput_vs_vllm": 0.5,
        "goodput_alone_vs_vllm": 1.25,
    }
    rounds = {"floor": 1, "mixed": 2, "background": 1}
    table = "\n".join(markdown({"traffic": TRAFFIC.__dict__, "rounds": rounds, "rows": rows, "ratios": ratios(rows)}))
    assert "1 of the floor, 2 of the mixed runs, 1 of the backlog alone" in table
    assert "| monolith | no (floor) |" in table and "| monolith | 2.0 | 2.0 | 0.5 | 0.5 | 1.25 |" in table
    assert "| vllm | alone |  |  |  |  |  | 20.0 | 5.0 | 0 |" in table


def test_each_mode_runs_its_own_rounds_in_turns_and_the_order_flips_every_round() -> None:
    runs = schedule(["a", "b", "c"], {"floor": 1, "mixed": 2, "background": 4})
    assert runs == [
        ("floor", "a"), ("floor", "b"), ("floor", "c"),
        ("mixed", "a"), ("mixed", "b"), ("mixed", "c"), ("mixed", "c"), ("mixed", "b"), ("mixed", "a"),
        *[("background", s) for s in ["a", "b", "c", "c", "b", "a"] * 2],
    ]  # fmt: skip


def test_a_job_that_never_calls_back_ends_the_wait_with_its_id() -> None:
    async def wait() -> None:
        async with JobCallbacks() as callbacks:
            await callbacks.finished({"job-1"}, timeout_s=0.2)

    with pytest.raises(RuntimeError, match="job-1"):
        asyncio.run(wait())
