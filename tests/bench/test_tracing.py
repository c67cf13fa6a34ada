"""Part 9's arithmetic (what tracing costs): per route, the summed rounds of tracing on over tracing off, and the
table. The servers themselves: tests/api/test_tracing.py exports from a real one to the same receiver."""

from __future__ import annotations

from monolith.bench.tracing import markdown, tracing_ratios


def row(system: str, route: str, round_: int, tok_s: float, ttft: float, ok: int = 8) -> dict:
    return {
        "system": system,
        "route": route,
        "round": round_,
        "concurrency": 8,
        "ok": ok,
        "requests_per_s": 1.0,
        "output_tokens_per_s": tok_s,
        "ttft_p50_s": ttft,
        "ttft_p99_s": ttft,
        "e2e_p50_s": 1.0,
    }


def test_the_ratios_sum_every_round_per_route_and_skip_a_route_one_side_lacks() -> None:
    rows = [
        row("tracing off", "/v1/completions", 0, 100, 0.2),
        row("tracing on", "/v1/completions", 0, 98, 0.21),
        row("tracing on", "/v1/completions", 1, 96, 0.2),
        row("tracing off", "/v1/completions", 1, 100, 0.2),
        row("tracing off", "/rag", 0, 50, 0.5),
        row("tracing on", "/rag", 0, 40, 0.6, ok=0),  # nothing answered: no ratio for /rag
    ]
    assert tracing_ratios(rows) == [
        {"route": "/v1/completions", "throughput on / off": 0.97, "ttft p50 on / off": 1.025}
    ]
    table = "\n".join(
        markdown({"rows": rows, "ratios": tracing_ratios(rows), "max_tokens": 32, "rounds": 2, "spans_exported": 9})
    )
    assert "| /v1/completions | 0.97 | 1.025 |" in table and "9 spans exported" in table
