"""Reading a tool-constrained answer: whole, or cut short by max_tokens (the calls it finished are kept)."""

from __future__ import annotations

import json

from monolith.protocol.chat import FunctionDefinition, Tool
from monolith.serving.tools import ToolPlan, calls_schema, parse_answer

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
