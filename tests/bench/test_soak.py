"""`make soak`'s judgement and its load, without the half hour: the verdicts on made-up timelines (a leak is
flagged, in-flight noise is not), and each kind of traffic against the app on loopback with a scripted engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from monolith.bench.soak import Load, Plan, Sample, Tally, rates, verdicts
from monolith.config import Settings
from tests.conftest import free_port
from tests.scripted import ScriptedEngine, ThreadedServer

Curve = Callable[[float], float]
PLAN = Plan(minutes=20, warmup_minutes=5, interval_s=10, load=0.5)


def timeline(rss: Curve, fds: Curve, connections: Curve = lambda t: 4) -> list[Sample]:
    """A sample every 10 s over the plan's minutes; the engine's RSS and fds and the connections as given."""
    times = (PLAN.interval_s * i for i in range(int(PLAN.minutes * 60 / PLAN.interval_s)))
    return [Sample(t, 1000.0, rss(t), 40, int(fds(t)), int(connections(t)), 0.0, 0.0, 0.0) for t in times]


def test_steady_memory_and_noisy_but_flat_descriptors_pass() -> None:
    samples = timeline(rss=lambda t: 3000 + (t % 50), fds=lambda t: 70 + (int(t) // 10) % 7)
    judged = verdicts(samples, PLAN)
    assert all(v["ok"] for v in judged.values()), judged


def test_memory_that_keeps_growing_after_warm_up_is_flagged() -> None:
    samples = timeline(rss=lambda t: 3000 * (1 + t / 6000), fds=lambda t: 70)  # +10% over the judged 15 min
    judged = verdicts(samples, PLAN)
    assert not judged["engine_rss_mb"]["ok"] and judged["engine_rss_mb"]["growth"] > 0.05
    assert judged["server_rss_mb"]["ok"]


def test_a_rising_floor_of_descriptors_or_connections_is_flagged() -> None:
    leak = timeline(rss=lambda t: 3000, fds=lambda t: 70 + int(t) // 120, connections=lambda t: 4 + int(t) // 300)
    judged = verdicts(leak, PLAN)
    assert not judged["engine_fds"]["ok"] and not judged["db_connections"]["ok"]


def test_the_offered_load_is_the_asked_share_of_capacity() -> None:
    arrivals = rates(PLAN, tokens_per_s=200.0)
    assert arrivals["offered_tokens_per_s"] == 100.0
    assert arrivals["jobs_per_s"] == round(0.3 * 100 / PLAN.job_tokens, 3)
    assert arrivals["batch_lines"] == round(0.2 * 100 * PLAN.batch_every_s / PLAN.batch_tokens)


def test_each_kind_of_traffic_is_answered_and_counted(settings: Settings) -> None:
    engine = ScriptedEngine(capacity=4, gap_s=0.005)
    tally = Tally()

    async def drive(base_url: str) -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            load = Load(client, settings, PLAN, tally)
            for i, kind in enumerate(("chat", "chat_stream", "chat_hangup", "completion")):
                await load.realtime(kind, i)
            for i in range(3):
                await load.job(i)
            await load.batch(0, lines=2)
            await load.poll_jobs(stop_at=time.monotonic())
            assert not load.pending

    with ThreadedServer(settings, engine, free_port(), jobs=True) as server:
        asyncio.run(drive(server.base_url))
    assert tally.counts == {
        "chat 200": 1,
        "chat_stream 200": 1,
        "chat_hangup 200": 1,
        "completion 200": 1,
        "job succeeded": 3,
        "batch line 200": 2,
        "batch completed": 1,
    }, tally.counts
    assert engine.aborted >= 1  # the client that hung up mid-answer freed its generation


def test_a_pool_that_fills_once_on_a_busy_moment_is_not_growth() -> None:
    filled = timeline(rss=lambda t: 3000, fds=lambda t: 70, connections=lambda t: 4 if t < 500 else 5)
    judged = verdicts(filled, PLAN)
    assert judged["db_connections"]["ok"] and judged["db_connections"]["floors_by_third"] == [4, 5, 5]
