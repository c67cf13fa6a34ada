"""Part 5's bodies and its cost table: each mode's throughput over plain's, and monolith's over vllm's."""

from __future__ import annotations

from monolith.bench.structured import MODES, chat_body, costs, markdown


def row(system: str, mode: str, tokens_per_s: float) -> dict:
    return {
        "system": system,
        "mode": mode,
        "load": "closed c=1",
        "requests_per_s": 1.0,
        "output_tokens_per_s": tokens_per_s,
        "e2e_p50_s": 1.0,
        "wall_s": 2.0,
        "ok": 2,
    }


def test_each_mode_adds_its_constraint_to_the_same_chat() -> None:
    bodies = {mode: chat_body("twin", mode, 32)(3) for mode in MODES}
    assert "response_format" in bodies["json_schema"] and bodies["tool required"]["tool_choice"] == "required"
    assert not {"response_format", "tools"} & set(bodies["plain"])
    assert all(b["stream"] and b["max_tokens"] == 32 and b["temperature"] == 0.0 for b in bodies.values())


def test_costs_divide_by_plain_and_by_the_peer() -> None:
    rows = [row("vllm", "plain", 20.0), row("vllm", "json_schema", 16.0)]
    rows += [row("monolith", "plain", 20.0), row("monolith", "json_schema", 12.0)]
    by = {(c["system"], c["mode"]): c for c in costs(rows)}
    assert by[("vllm", "json_schema")]["tokens_per_s_vs_plain"] == 0.8
    assert by[("monolith", "json_schema")]["tokens_per_s_vs_plain"] == 0.6
    assert by[("monolith", "json_schema")]["monolith_vs_vllm"] == 0.75
    assert by[("vllm", "plain")]["monolith_vs_vllm"] is None
    table = "\n".join(markdown({"max_tokens": 32, "rows": rows, "costs": costs(rows)}))
    assert "| monolith | json_schema | closed c=1 | 1.0 | 12.0 | 1.0 | 12.0 | 0.6 | 0.75 |" in table
