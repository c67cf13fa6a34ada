"""Part 5 of `make bench`: what structured output and tool calls cost. The same chat requests on monolith and
`vllm serve` (same engine flags, compact JSON on both), streamed: plain text, a strict JSON schema, and a
required tool call, each at concurrency 1 and 8, measured in turns (ABBA) like the other parts."""

from __future__ import annotations

from collections.abc import Callable

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "skills": {"type": "array", "items": {"type": "string"}},
        "bio": {"type": "string"},
    },
    "required": ["name", "age", "skills", "bio"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
CITIES = ["Paris", "Lima", "Oslo", "Cairo", "Osaka", "Quito", "Perth", "Turin"]
# What each mode adds to the same chat request.
MODES: dict[str, dict] = {
    "plain": {},
    "json_schema": {"response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}},
    "tool required": {"tools": [WEATHER], "tool_choice": "required"},
}


def chat_body(name: str, mode: str, max_tokens: int) -> Callable[[int], dict]:
    def body(i: int) -> dict:
        city = CITIES[i % len(CITIES)]
        prompt = (
            f"What is the weather in {city}?"
            if mode == "tool required"
            else f"Describe a person who lives in {city}: name, age, skills and a short bio."
        )
        return {
            "model": name,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
            **MODES[mode],
        }

    return body


def costs(rows: list[dict]) -> list[dict]:
    """Per system and load: each mode's output tok/s over plain's, and monolith's over vllm's per mode."""
    by = {(r["system"], r["mode"], r["load"]): r for r in rows}
    out = []
    for (system, mode, load), r in sorted(by.items()):
        plain = by.get((system, "plain", load))
        peer = by.get(("vllm", mode, load)) if system == "monolith" else None
        out.append(
            {
                "system": system,
                "mode": mode,
                "load": load,
                "tokens_per_s_vs_plain": _ratio(r, plain),
                "monolith_vs_vllm": _ratio(r, peer),
            }
        )
    return out


def _ratio(row: dict, base: dict | None) -> float | None:
    if base is None or not base["output_tokens_per_s"]:
        return None
    return round(row["output_tokens_per_s"] / base["output_tokens_per_s"], 3)


def markdown(structured: dict | None) -> list[str]:
    if not structured:
        return []
    lines = [
        "",
        f"Structured output and tools: chat, streamed, at most {structured['max_tokens']} output tokens, "
        "temperature 0; a strict JSON schema (`response_format`) and `tool_choice: required` against plain text.",
        "",
        "| system | mode | load | req/s | output tok/s | e2e p50 | mean output tokens | tok/s vs plain "
        "| monolith/vllm |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    cost = {(c["system"], c["mode"], c["load"]): c for c in structured["costs"]}
    for r in structured["rows"]:
        c = cost[(r["system"], r["mode"], r["load"])]
        mean_tokens = round(r["output_tokens_per_s"] * r["wall_s"] / r["ok"], 1) if r["ok"] else None
        lines.append(
            f"| {r['system']} | {r['mode']} | {r['load']} | {r['requests_per_s']} | {r['output_tokens_per_s']} "
            f"| {r['e2e_p50_s']} | {mean_tokens} | {c['tokens_per_s_vs_plain']} | {c['monolith_vs_vllm']} |"
        )
    return lines
