"""The OpenAI contract that clients rely on, with the official `openai` client against a real server:
structured outputs, tool calls, logprobs, n, vLLM's sampling fields; and every field the server cannot honour
is a 400 naming it."""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest
from openai import OpenAI

from monolith.bench.structured import WEATHER
from tests.api.conftest import Person

MODEL = "twin"
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "integer"}}, "required": ["zone"]},
    },
}
TOOLS = {t["function"]["name"]: t for t in (WEATHER, TIME)}


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def assert_valid_call(call: object) -> None:
    """A call names one of the tools and its arguments satisfy that tool's schema."""
    function = call.function  # type: ignore[attr-defined]
    assert function.name in TOOLS, function.name
    jsonschema.validate(json.loads(function.arguments), TOOLS[function.name]["function"]["parameters"])
    assert call.id.startswith("call_") and call.type == "function"  # type: ignore[attr-defined]


# --- structured outputs ---------------------------------------------------------------------------


def test_parse_with_a_pydantic_model_returns_the_parsed_object(openai_client: OpenAI) -> None:
    done = openai_client.chat.completions.parse(
        model=MODEL, messages=user("Invent a person."), response_format=Person, max_tokens=80, temperature=0
    )
    person = done.choices[0].message.parsed
    assert isinstance(person, Person) and person.name


def test_json_mode_output_parses(openai_client: OpenAI) -> None:
    done = openai_client.chat.completions.create(
        model=MODEL,
        messages=user("Describe a cat as JSON."),
        response_format={"type": "json_object"},
        max_tokens=120,
        temperature=0,
    )
    assert done.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(done.choices[0].message.content or ""), dict)


def test_a_streamed_json_schema_answer_parses_once_joined(openai_client: OpenAI) -> None:
    schema = {"name": "person", "schema": Person.model_json_schema(), "strict": True}
    stream = openai_client.chat.completions.create(
        model=MODEL,
        messages=user("Invent a person."),
        response_format={"type": "json_schema", "json_schema": schema},
        max_tokens=80,
        temperature=0,
        stream=True,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    Person.model_validate_json(text)


@pytest.mark.parametrize(
    ("constraint", "check"),
    [
        ({"choice": ["yes", "no"]}, lambda text: text in ("yes", "no")),
        ({"regex": "[0-9]{3}-[0-9]{4}"}, lambda text: len(text) == 8 and text[3] == "-"),
        (
            {"json": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}},
            lambda text: isinstance(json.loads(text)["n"], int),
        ),
        ({"grammar": 'root ::= "red" | "green" | "blue"'}, lambda text: text in ("red", "green", "blue")),
    ],
)
def test_vllm_structured_outputs_on_completions(openai_client: OpenAI, constraint: dict, check) -> None:
    done = openai_client.completions.create(
        model=MODEL, prompt="Answer:", max_tokens=40, temperature=0, extra_body={"structured_outputs": constraint}
    )
    assert check(done.choices[0].text), done.choices[0].text


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}},
            "response_format.json_schema",
        ),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format.json_schema"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"structured_outputs": {"regex": "(["}}, "structured_outputs"),
        ({"structured_outputs": {"regex": "a", "choice": ["a"]}}, "structured_outputs"),
        (
            {"structured_outputs": {"regex": "a", "disable_any_whitespace": True}},
            "structured_outputs.disable_any_whitespace",
        ),
        ({"structured_outputs": {"choice": ["a"]}, "response_format": {"type": "json_object"}}, "structured_outputs"),
    ],
)
def test_an_invalid_constraint_is_a_400_naming_it(http: httpx.Client, extra: dict, param: str) -> None:
    response = http.post("/v1/chat/completions", json={"model": MODEL, "messages": user("hi"), **extra})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


# --- tools -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_required_returns_valid_calls(openai_client: OpenAI, stream: bool) -> None:
    kwargs = {"model": MODEL, "messages": user("What is the weather in Paris?"), "tools": [WEATHER, TIME]}
    kwargs |= {"tool_choice": "required", "max_tokens": 120, "temperature": 0}
    if not stream:
        choice = openai_client.chat.completions.create(**kwargs).choices[0]
        calls, reason = choice.message.tool_calls or [], choice.finish_reason
    else:
        with openai_client.chat.completions.stream(**kwargs) as events:  # the SDK assembles streamed tool-call deltas
            final = events.get_final_completion()
        calls, reason = final.choices[0].message.tool_calls or [], final.choices[0].finish_reason
    assert calls and reason == "tool_calls"
    for call in calls:
        assert_valid_call(call)


@pytest.mark.parametrize("stream", [False, True])
def test_a_named_tool_choice_calls_that_tool(openai_client: OpenAI, stream: bool) -> None:
    kwargs = {"model": MODEL, "messages": user("Time in zone 3?"), "tools": [WEATHER, TIME]}
    # temperature 0 and room to close the JSON: a sampled argument string ran past 60 tokens once (a length stop,
    # which the SDK's stream helper raises as LengthFinishReasonError), on a loaded machine.
    kwargs |= {"tool_choice": {"type": "function", "function": {"name": "get_time"}}, "max_tokens": 200}
    kwargs |= {"temperature": 0}
    if not stream:
        calls = openai_client.chat.completions.create(**kwargs).choices[0].message.tool_calls or []
    else:
        with openai_client.chat.completions.stream(**kwargs) as events:
            calls = events.get_final_completion().choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_time"]
    assert_valid_call(calls[0])


def test_parallel_tool_calls_false_gives_one_call(openai_client: OpenAI) -> None:
    done = openai_client.chat.completions.create(
        model=MODEL,
        messages=user("Weather in Paris, Rome and Oslo?"),
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=120,
    )
    assert len(done.choices[0].message.tool_calls or []) == 1


def test_auto_answers_with_calls_or_content_never_raw_json(openai_client: OpenAI) -> None:
    for question in ("What is the weather in Paris?", "Say hello."):
        choice = openai_client.chat.completions.create(
            model=MODEL, messages=user(question), tools=[WEATHER], max_tokens=150, temperature=0
        ).choices[0]
        if choice.message.tool_calls:
            assert choice.finish_reason == "tool_calls" and choice.message.content is None
            for call in choice.message.tool_calls:
                assert_valid_call(call)
        else:
            assert choice.finish_reason in ("stop", "length"), choice.finish_reason
            assert choice.message.content and not choice.message.content.startswith("{"), choice.message.content


def test_a_conversation_with_a_tool_result_goes_on(openai_client: OpenAI) -> None:
    history = [
        *user("Weather in Paris?"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "C"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees and sunny"},
    ]
    done = openai_client.chat.completions.create(
        model=MODEL, messages=history, tools=[WEATHER], tool_choice="none", max_tokens=30
    )
    assert done.choices[0].message.content and not done.choices[0].message.tool_calls


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tools": [WEATHER, WEATHER]}, "tools"),
        ({"tools": [WEATHER], "response_format": {"type": "json_object"}}, "response_format"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ],
)
def test_bad_tool_requests_are_400s_naming_the_field(http: httpx.Client, extra: dict, param: str) -> None:
    response = http.post("/v1/chat/completions", json={"model": MODEL, "messages": user("hi"), **extra})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


# --- logprobs and n ----------------------------------------------------------------------------------


def test_chat_logprobs_are_the_tokens_of_the_answer(openai_client: OpenAI) -> None:
    done = openai_client.chat.completions.create(
        model=MODEL, messages=user("Name a fruit."), max_tokens=12, logprobs=True, top_logprobs=3, temperature=0
    )
    choice = done.choices[0]
    content = choice.logprobs.content
    assert len(content) == done.usage.completion_tokens
    # Every generated token, the end-of-turn token too (counted in usage; not part of the text).
    assert choice.finish_reason == "stop" and content[-1].token == "<|im_end|>"
    assert "".join(t.token for t in content[:-1]) == choice.message.content
    for token in content:
        assert token.logprob <= 0 and len(token.top_logprobs) == 3
        assert token.top_logprobs[0].logprob >= token.top_logprobs[-1].logprob
        # greedy: the chosen token is the most likely one
        assert token.top_logprobs[0].token == token.token and token.top_logprobs[0].logprob == token.logprob
        assert bytes(token.bytes).decode() == token.token


def test_echo_with_max_tokens_zero_scores_the_prompt(openai_client: OpenAI) -> None:
    prompt = "The capital of France is Paris"
    done = openai_client.completions.create(model=MODEL, prompt=prompt, max_tokens=0, echo=True, logprobs=1)
    choice = done.choices[0]
    assert choice.text == prompt and done.usage.completion_tokens == 0
    lp = choice.logprobs
    assert "".join(lp.tokens) == prompt and len(lp.tokens) == done.usage.prompt_tokens
    assert lp.token_logprobs[0] is None and all(x <= 0 for x in lp.token_logprobs[1:])
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]
    # A likelier continuation scores higher: the loglikelihood an evaluation harness reads.
    odd = openai_client.completions.create(
        model=MODEL, prompt="The capital of France is banana", max_tokens=0, echo=True, logprobs=0
    )
    assert sum(lp.token_logprobs[1:]) > sum(odd.choices[0].logprobs.token_logprobs[1:])


def test_completion_logprobs_with_echo_cover_prompt_then_answer(openai_client: OpenAI) -> None:
    done = openai_client.completions.create(
        model=MODEL, prompt="One, two,", max_tokens=4, echo=True, logprobs=2, temperature=0
    )
    lp = done.choices[0].logprobs
    assert "".join(lp.tokens) == done.choices[0].text
    assert len(lp.tokens) == done.usage.prompt_tokens + done.usage.completion_tokens
    assert all(len(top) <= 3 for top in lp.top_logprobs[1:])  # the chosen token and 2 alternatives


def test_streamed_completion_logprobs_continue_across_chunks(openai_client: OpenAI) -> None:
    kwargs = {"model": MODEL, "prompt": "One, two,", "max_tokens": 6, "echo": True, "logprobs": 1, "temperature": 0}
    whole = openai_client.completions.create(**kwargs).choices[0].logprobs
    tokens, offsets = [], []
    for chunk in openai_client.completions.create(**kwargs, stream=True):
        for choice in chunk.choices:
            if choice.logprobs is not None:
                tokens += choice.logprobs.tokens
                offsets += choice.logprobs.text_offset
    assert tokens == whole.tokens and offsets == whole.text_offset


@pytest.mark.parametrize("stream", [False, True])
def test_n_choices_for_chat(openai_client: OpenAI, stream: bool) -> None:
    kwargs = {"model": MODEL, "messages": user("Name an animal."), "n": 3, "max_tokens": 8, "temperature": 1.0}
    if not stream:
        done = openai_client.chat.completions.create(**kwargs)
        assert sorted(c.index for c in done.choices) == [0, 1, 2]
        assert all(c.message.content for c in done.choices)
        return
    texts: dict[int, str] = {}
    finished = set()
    for chunk in openai_client.chat.completions.create(**kwargs, stream=True):
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
            if c.finish_reason:
                finished.add(c.index)
    assert sorted(texts) == [0, 1, 2] == sorted(finished) and all(texts.values())


def test_n_choices_for_each_completion_prompt(openai_client: OpenAI) -> None:
    done = openai_client.completions.create(model=MODEL, prompt=["Red", "Blue"], n=2, max_tokens=4)
    assert sorted(c.index for c in done.choices) == [0, 1, 2, 3]


# --- the sampling fields, and strictness ---------------------------------------------------------------


def test_vllm_sampling_fields_take_effect(openai_client: OpenAI, http: httpx.Client) -> None:
    plain = openai_client.completions.create(model=MODEL, prompt="The sky is", max_tokens=3, temperature=0)
    first = plain.choices[0].logprobs
    assert first is None
    # A bias of -100 on the greedy first token makes it impossible: the answer starts otherwise.
    ids = http.post("/tokenize", json={"model": MODEL, "prompt": plain.choices[0].text}).json()
    biased = openai_client.completions.create(
        model=MODEL, prompt="The sky is", max_tokens=3, temperature=0, logit_bias={str(ids["tokens"][0]): -100}
    )
    assert biased.choices[0].text != plain.choices[0].text
    # min_tokens with stop_token_ids: at least that many tokens even where the model would stop.
    long = openai_client.completions.create(
        model=MODEL,
        prompt="Hi",
        max_tokens=20,
        temperature=0,
        extra_body={"min_tokens": 20, "top_k": 5, "min_p": 0.05, "repetition_penalty": 1.2},
    )
    assert long.usage.completion_tokens == 20


@pytest.mark.parametrize(
    ("path", "extra", "param"),
    [
        ("/v1/chat/completions", {"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ("/v1/chat/completions", {"modalities": ["text", "audio"]}, "modalities"),
        ("/v1/chat/completions", {"store": True}, "store"),
        ("/v1/chat/completions", {"functions": [{"name": "f"}]}, "functions"),
        ("/v1/chat/completions", {"web_search_options": {}}, "web_search_options"),
        ("/v1/chat/completions", {"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),
        ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ("/v1/chat/completions", {"n": 17}, "n"),
        ("/v1/completions", {"suffix": "end"}, "suffix"),
        ("/v1/completions", {"best_of": 3}, "best_of"),
        ("/v1/completions", {"max_tokens": 0}, "max_tokens"),
        ("/v1/completions", {"logit_bias": {"abc": 1}}, "logit_bias"),
        ("/v1/completions", {"logit_bias": {"99999999": 1}}, "logit_bias"),
        ("/v1/completions", {"stop_token_ids": [99999999]}, "stop_token_ids"),
        ("/v1/completions", {"min_tokens": 50, "max_tokens": 10}, "min_tokens"),
        ("/v1/completions", {"repetition_penalty": 0}, "repetition_penalty"),
        ("/v1/completions", {"min_p": 1.5}, "min_p"),
        ("/v1/completions", {"top_k": -2}, "top_k"),
    ],
)
def test_a_field_the_server_cannot_honour_is_a_400_naming_it(
    http: httpx.Client, path: str, extra: dict, param: str
) -> None:
    body = {"model": MODEL, **({"messages": user("hi")} if "chat" in path else {"prompt": "hi"}), **extra}
    response = http.post(path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_unknown_fields_stay_ignored(openai_client: OpenAI) -> None:
    done = openai_client.chat.completions.create(
        model=MODEL, messages=user("hi"), max_tokens=3, extra_body={"a_future_field": 1}
    )
    assert done.choices[0].message.content is not None


def test_a_structured_async_job_with_a_bad_schema_is_refused_at_submit(http: httpx.Client) -> None:
    body = {
        "model": MODEL,
        "messages": user("hi"),
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}},
    }
    response = http.post("/v1/async/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert "response_format" in (response.json()["error"]["param"] or "")
