"""The repetition penalty a JSON answer gets when its request sets none (engine.json_repetition_penalty), and
only then: never over the client's own, never for the tools' grammar or a plain answer; and the temperature a tool
answer gets when its request sets none (engine.tool_temperature). The real app, a scripted engine that keeps the
sampling it was asked for."""

from __future__ import annotations

import httpx
import pytest

from monolith.config import Settings
from monolith.engine import Sampling
from tests.api.test_native_tools import Answering
from tests.conftest import free_port
from tests.scripted import ThreadedServer

ASK = [{"role": "user", "content": "A joke as JSON."}]
CHAT = "/v1/chat/completions"
JOKE = {"type": "object", "properties": {"setup": {"type": "string"}}, "required": ["setup"]}
TOOL = {"type": "function", "function": {"name": "joke", "parameters": JOKE}}


def sampling_asked(settings: Settings, body: dict, route: str = CHAT, **engine_update: float | None) -> Sampling:
    """The sampling the engine was asked for, the server's engine settings updated with `engine_update`."""
    engine = Answering(answer='{"setup": "a"}')
    engine_settings = settings.engine.model_copy(update=engine_update)
    with ThreadedServer(settings.model_copy(update={"engine": engine_settings}), engine, free_port()) as server:
        answered = httpx.post(f"{server.base_url}{route}", json={"model": "twin", **body}, timeout=30)
    assert answered.status_code == 200, answered.text
    return engine.asked[-1][1]


def penalty_asked(settings: Settings, route: str, body: dict, penalty: float | None = 1.1) -> float:
    return sampling_asked(settings, body, route, json_repetition_penalty=penalty).repetition_penalty


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"response_format": {"type": "json_object"}}, 1.1),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "j", "schema": JOKE}}}, 1.1),
        ({"structured_outputs": {"json": JOKE}}, 1.1),
        ({"response_format": {"type": "json_object"}, "repetition_penalty": 1.0}, 1.0),
        ({"response_format": {"type": "json_object"}, "repetition_penalty": 1.3}, 1.3),
        ({"structured_outputs": {"choice": ["a", "b"]}}, 1.0),
        ({"tools": [TOOL], "tool_choice": "required"}, 1.0),
        ({}, 1.0),
    ],
)
def test_a_json_chat_answer_gets_the_penalty_only_when_the_client_set_none(
    settings: Settings, body: dict, expected: float
) -> None:
    assert penalty_asked(settings, CHAT, {"messages": ASK, **body}) == expected


def test_completions_too_and_none_turns_it_off(settings: Settings) -> None:
    body = {"prompt": "A joke as JSON:", "response_format": {"type": "json_object"}}
    assert penalty_asked(settings, "/v1/completions", body) == 1.1
    assert penalty_asked(settings, "/v1/completions", body, penalty=None) == 1.0


NAMED = {"type": "function", "function": {"name": "joke"}}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"tools": [TOOL], "tool_choice": "required"}, 0.0),
        ({"tools": [TOOL], "tool_choice": "auto"}, 0.0),
        ({"tools": [TOOL]}, 0.0),
        ({"tools": [TOOL], "tool_choice": NAMED}, 0.0),
        ({"tools": [TOOL], "tool_choice": "required", "temperature": 0.9}, 0.9),
        ({"tools": [TOOL], "tool_choice": "required", "temperature": None}, 0.0),
        ({"tools": [TOOL], "tool_choice": "none"}, 0.7),  # no grammar: a plain answer
        ({"response_format": {"type": "json_object"}}, 0.7),  # measured worse at 0 (docs/api/openai.md)
        ({}, 0.7),
        ({"temperature": 0.2}, 0.2),
    ],
)
def test_a_tool_answer_is_greedy_only_when_the_client_set_no_temperature(
    settings: Settings, body: dict, expected: float
) -> None:
    assert sampling_asked(settings, {"messages": ASK, **body}, tool_temperature=0.0).temperature == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"tools": [TOOL], "tool_choice": NAMED}, 0.5),
        ({"tools": [TOOL], "tool_choice": NAMED, "frequency_penalty": 0.0}, 0.0),
        ({"tools": [TOOL], "tool_choice": NAMED, "frequency_penalty": -1.0}, -1.0),
        ({"tools": [TOOL], "tool_choice": "required"}, 0.0),  # it would invent a second call (docs/api/openai.md)
        ({"tools": [TOOL], "tool_choice": "auto"}, 0.0),
        ({"tools": [TOOL], "tool_choice": "none"}, 0.0),
        ({"response_format": {"type": "json_object"}}, 0.0),
        ({}, 0.0),
        ({"frequency_penalty": 1.5}, 1.5),
    ],
)
def test_a_named_function_gets_the_frequency_penalty_only_when_the_client_set_none(
    settings: Settings, body: dict, expected: float
) -> None:
    asked = sampling_asked(settings, {"messages": ASK, **body}, tool_frequency_penalty=0.5)
    assert asked.frequency_penalty == expected


def test_no_tool_defaults_leave_the_chat_defaults(settings: Settings) -> None:
    named = {"messages": ASK, "tools": [TOOL], "tool_choice": NAMED}
    off = sampling_asked(settings, named, tool_temperature=None, tool_frequency_penalty=None)
    assert (off.temperature, off.frequency_penalty) == (0.7, 0.0)
