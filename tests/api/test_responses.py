"""/v1/responses with the official `openai` client against a real server: text, instructions, streamed events,
text.format json_schema (parse), function tools and a conversation carrying a tool's output, the RAG alias, and
every field that needs state or features the server lacks is a 400 naming it."""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest
from openai import OpenAI

from monolith.bench.structured import WEATHER as CHAT_WEATHER
from tests.api.conftest import Person

MODEL = "twin"
WEATHER = {"type": "function", **CHAT_WEATHER["function"]}  # Responses' flat shape


def test_text_input_gives_a_completed_message(openai_client: OpenAI) -> None:
    done = openai_client.responses.create(model=MODEL, input="Say hello.", max_output_tokens=40, temperature=0)
    assert done.id.startswith("resp_") and done.object == "response" and done.model == MODEL
    assert done.output[0].type == "message" and done.output[0].role == "assistant"
    assert done.output_text.strip()
    assert (
        done.usage.output_tokens > 0 and done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens
    )
    assert done.status == ("incomplete" if done.usage.output_tokens == 40 else "completed")
    assert done.store is False


def test_instructions_and_messages_reach_the_prompt(openai_client: OpenAI, http: httpx.Client) -> None:
    """The instructions become the system turn: the prompt is longer by them, and they are echoed."""
    messages = [{"role": "user", "content": "What is 2+2?"}]
    plain = openai_client.responses.create(model=MODEL, input=messages, max_output_tokens=1)
    told = openai_client.responses.create(
        model=MODEL, input=messages, instructions="Answer in French.", max_output_tokens=1
    )
    tokens = http.post(
        "/tokenize", json={"model": MODEL, "messages": [{"role": "system", "content": "Answer in French."}, *messages]}
    )
    assert told.usage.input_tokens == tokens.json()["count"] != plain.usage.input_tokens
    assert told.instructions == "Answer in French."


def test_max_output_tokens_ends_an_incomplete_response(openai_client: OpenAI) -> None:
    done = openai_client.responses.create(
        model=MODEL, input="Write a long story.", max_output_tokens=3, extra_body={"ignore_eos": False}
    )
    assert done.status == "incomplete" and done.incomplete_details.reason == "max_output_tokens"
    assert done.usage.output_tokens == 3


def test_streamed_events_build_the_same_text(openai_client: OpenAI) -> None:
    events = list(
        openai_client.responses.create(model=MODEL, input="Count to five.", max_output_tokens=24, stream=True)
    )
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:-1] == ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert deltas and deltas == final.output_text == events[-4].text
    assert final.usage.output_tokens > 0


def test_text_format_json_schema_parses(openai_client: OpenAI) -> None:
    done = openai_client.responses.parse(
        model=MODEL, input="Invent a person.", text_format=Person, max_output_tokens=80, temperature=0
    )
    assert isinstance(done.output_parsed, Person) and done.output_parsed.name
    assert done.text.format.type == "json_schema"


def test_streamed_text_format_parses(openai_client: OpenAI) -> None:
    with openai_client.responses.stream(
        model=MODEL, input="Invent a person.", text_format=Person, max_output_tokens=200, temperature=0
    ) as s:  # temperature 0 and room to close the JSON: a sampled name once ran past 80 tokens
        final = s.get_final_response()
    assert isinstance(final.output_parsed, Person)


def test_json_object_format_parses(openai_client: OpenAI) -> None:
    done = openai_client.responses.create(
        model=MODEL,
        input="Describe a cat as JSON.",
        text={"format": {"type": "json_object"}},
        max_output_tokens=120,
        temperature=0,
    )
    assert isinstance(json.loads(done.output_text), dict)


@pytest.mark.parametrize("stream", [False, True])
def test_a_required_tool_is_called_with_valid_arguments(openai_client: OpenAI, stream: bool) -> None:
    # Greedy: sampled, 1 answer in 12 went on to a 4th call and stopped at max_output_tokens (response.incomplete,
    # no response.completed: a failed full test run here); greedy makes one call in 26 tokens every time.
    kwargs = {"model": MODEL, "input": "Weather in Paris?", "tools": [WEATHER], "max_output_tokens": 120}
    kwargs["temperature"] = 0
    if stream:
        with openai_client.responses.stream(**kwargs, tool_choice="required") as s:
            done = s.get_final_response()
    else:
        done = openai_client.responses.create(**kwargs, tool_choice="required")
    calls = [item for item in done.output if item.type == "function_call"]
    assert calls and len(calls) == len(done.output)
    for call in calls:
        assert call.name == "get_weather" and call.call_id.startswith("call_") and call.id.startswith("fc_")
        jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])


def test_a_named_tool_and_parallel_false_give_one_call(openai_client: OpenAI) -> None:
    done = openai_client.responses.create(
        model=MODEL,
        input="Weather in Oslo?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        max_output_tokens=60,
    )
    assert [item.type for item in done.output] == ["function_call"]
    assert done.parallel_tool_calls is False and done.tool_choice.name == "get_weather"


def test_a_conversation_with_a_function_output_goes_on(openai_client: OpenAI) -> None:
    """The earlier call and its output go back in `input`; `none` makes the model answer in text."""
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris","unit":"C"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny, 21 C"},
    ]
    done = openai_client.responses.create(
        model=MODEL, input=history, tools=[WEATHER], tool_choice="none", max_output_tokens=30
    )
    assert done.output[0].type == "message" and done.output_text.strip()
    assert done.usage.input_tokens > 20  # the call and its output are in the prompt


def test_the_rag_alias_answers_with_sources(openai_client: OpenAI) -> None:
    done = openai_client.responses.create(
        model=f"{MODEL}-rag", input="What do posts say about RAG sources?", max_output_tokens=20
    )
    assert done.output_text.strip() and done.model_extra["sources"]


def test_a_streamed_rag_answer_carries_sources_from_the_start(openai_client: OpenAI) -> None:
    events = iter(
        openai_client.responses.create(model=f"{MODEL}-rag", input="RAG sources?", max_output_tokens=8, stream=True)
    )
    assert next(events).response.model_extra["sources"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"store": True}, "store"),
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"reasoning": {"effort": "high"}}, "reasoning"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"truncation": "auto"}, "truncation"),
        ({"service_tier": "flex"}, "service_tier"),
        ({"text": {"verbosity": "low"}}, "text.verbosity"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": [{"type": "function_call", "name": "get_weather"}]}, "input[0].call_id"),
        ({"input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].output"),
        ({"input": [{"type": "message", "content": "hi"}]}, "input[0].role"),
        ({"input": [{"role": "user", "content": "x " * 10_000}]}, "input"),
        ({"input": []}, "input"),
        ({"max_output_tokens": 100_000}, "max_output_tokens"),
        ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "nonsense"}}}}, "text.format"),
        ({"tool_choice": {"type": "function", "name": "nope"}, "tools": [WEATHER]}, "tool_choice"),
        ({"tools": [WEATHER], "text": {"format": {"type": "json_object"}}}, "text.format"),
    ],
)
def test_what_the_server_cannot_honour_is_a_400_naming_it(http: httpx.Client, extra: dict, param: str) -> None:
    response = http.post("/v1/responses", json={"model": MODEL, "input": "hi", **extra})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_an_unknown_model_is_a_404(http: httpx.Client) -> None:
    response = http.post("/v1/responses", json={"model": "gpt-5", "input": "hi"})
    assert response.status_code == 404 and response.json()["error"]["param"] == "model"
