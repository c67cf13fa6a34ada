"""Reading a tool-constrained answer: whole, or cut short by max_tokens (the calls it finished are kept)."""

from __future__ import annotations

import json

from monolith.protocol.chat import FunctionDefinition, Tool
from monolith.serving.tools import ToolPlan, calls_schema, instructions, parse_answer

TOOL = Tool("function", FunctionDefinition("get_weather", parameters={"type": "object"}))


def names_and_args(text: str, mode: str) -> tuple[str | None, list[tuple[str, dict]]]:
    answer = parse_answer(ToolPlan(mode, [TOOL], {}, named="get_weather" if mode == "named" else None), text)
    return answer.content, [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in answer.calls]


def test_whole_answers_in_each_mode() -> None:
    assert names_and_args('[{"name":"get_weather","arguments":{"city":"Oslo"}}]', "required") == (
        None,
        [("get_weather", {"city": "Oslo"})],
    )
    assert names_and_args('{"city":"Oslo"}', "named") == (None, [("get_weather", {"city": "Oslo"})])
    assert names_and_args('{"content":"Hello"}', "auto") == ("Hello", [])
    assert names_and_args('{"tool_calls":[{"name":"get_weather","arguments":{}}]}', "auto") == (
        None,
        [("get_weather", {})],
    )


def test_an_answer_cut_short_keeps_the_calls_it_finished() -> None:
    cut = '{"tool_calls":[{"name":"get_weather","arguments":{"city":"A"}}, {"name":"get_weather","arguments":{}},{"na'
    assert names_and_args(cut, "auto") == (None, [("get_weather", {"city": "A"}), ("get_weather", {})])
    assert names_and_args('[{"name":"get_weather","arguments":{}} , {"name":"get', "required")[1] == [
        ("get_weather", {})
    ]


def test_cut_short_content_is_the_text_so_far_even_if_it_quotes_a_call() -> None:
    text = '{"content":"like [{\\"name\\":\\"get_weather\\",\\"arguments\\":{}}] and so'
    assert names_and_args(text, "auto") == ('like [{"name":"get_weather","arguments":{}}] and so', [])
    assert names_and_args('{"city":', "named") == ('{"city":', [])  # nothing whole: the raw text


def test_the_calls_schema_bounds_parallel_calls() -> None:
    assert calls_schema([TOOL], parallel=False)["maxItems"] == 1
    assert calls_schema([TOOL], parallel=True)["maxItems"] > 1


def test_a_repeated_call_is_answered_once_and_a_distinct_one_is_kept() -> None:
    same = '{"name":"get_weather","arguments":{"city":"Oslo","days":2}}'
    spelled_apart = '{"name":"get_weather","arguments":{"days":2, "city":"Oslo"}}'  # same arguments, other order
    other = '{"name":"get_weather","arguments":{"city":"Oslo","days":3}}'
    text = f"[{same},{spelled_apart},{other},{same}]"
    assert names_and_args(text, "required")[1] == [
        ("get_weather", {"city": "Oslo", "days": 2}),
        ("get_weather", {"city": "Oslo", "days": 3}),
    ]
    assert len(names_and_args(f'{{"tool_calls":[{same},{same},{same}', "auto")[1]) == 1  # cut short too


def test_a_native_answer_loses_its_repeats_too() -> None:
    plan = ToolPlan("native", [TOOL], {}, reader=lambda text: (None, [("get_weather", '{"city": "Oslo"}')] * 3))
    assert len(parse_answer(plan, "whatever").calls) == 1


def test_the_instruction_shows_each_function_as_a_signature() -> None:
    parameters = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city's name."},
            "unit": {"enum": ["celsius", "fahrenheit"]},
            "days": {"type": "array", "items": {"type": "integer"}},
            "where": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]},
        },
        "required": ["city"],
    }
    tool = Tool("function", FunctionDefinition("get_weather", "The weather.", parameters))
    text = instructions(ToolPlan("required", [tool], {}))
    head = (
        '- get_weather(city: string, unit?: "celsius" | "fahrenheit", days?: array of integer, where?: {lat: number})'
    )
    assert f"{head}: The weather.\n    city: The city's name." in text
    assert text.startswith("You are an expert in composing functions.")
    assert '"tool_calls"' in instructions(ToolPlan("auto", [tool], {}))
    assert "Call the function get_weather" in instructions(ToolPlan("named", [tool], {}, named="get_weather"))


def test_a_signature_stops_at_a_depth_and_survives_odd_schemas() -> None:
    deep: dict = {"type": "string"}
    for _ in range(10):
        deep = {"type": "object", "properties": {"x": deep}}
    odd = {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"]},
            "b": {"anyOf": [{"type": "integer"}, {"const": 1}]},
            "c": 7,
            "d": deep,
        },
    }
    text = instructions(ToolPlan("required", [Tool("function", FunctionDefinition("f", None, odd))], {}))
    assert "- f(a?: string | null, b?: integer | 1, c?: any, d?: {x?: {x?: {x?: any}}})" in text
