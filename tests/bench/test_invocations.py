"""Part 7's measurement (/invocations against the direct route), against the app on loopback with a scripted
engine: both sides are timed for every case, the same number of times, and the overhead is their ratio."""

from __future__ import annotations

from monolith.bench.invocations import markdown, measure
from monolith.config import Settings
from tests.conftest import free_port
from tests.scripted import ScriptedEngine, ThreadedServer


def test_each_body_is_timed_on_both_routes_and_compared(settings: Settings) -> None:
    engine = ScriptedEngine(capacity=2, gap_s=0.01)
    with ThreadedServer(settings, engine, free_port()) as server:
        result = measure(server.base_url, "twin", 3, rounds=2)
    assert set(result["cases"]) == {"chat", "tgi"}
    for row in result["cases"].values():
        assert row["direct_mean_s"] > 0.02 and row["invocations_mean_s"] > 0.02, "three 10 ms tokens each"
        assert abs(row["overhead"] - row["invocations_mean_s"] / row["direct_mean_s"]) < 0.01
    assert engine.started == 2 * (1 + 2 * 2), "one warm-up and two rounds of both sides, per case"
    table = "\n".join(markdown(result))
    assert "| tgi | /generate |" in table and "| chat | /v1/chat/completions |" in table
