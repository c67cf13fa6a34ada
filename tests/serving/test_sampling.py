"""The repetition penalty a JSON answer gets when its request sets none (engine.json_repetition_penalty), and
only then: never over the client's own, never for the tools' grammar or a plain answer. The real app, a scripted
engine that keeps the sampling it was asked for."""

from __future__ import annotations

import httpx
import pytest

from monolith.config import Settings
from tests.api.test_native_tools import Answering
from tests.conftest import free_port
from tests.scripted import ThreadedServer

ASK = [{"role": "user", "content": "A joke as JSON."}]
JOKE = {"type": "object", "properties": {"setup": {"type": "string"}}, "required": ["setup"]}
TOOL = {"type": "function", "function": {"name": "joke", "parameters": JOKE}}


def penalty_asked(settings: Settings, route: str, body: dict, penalty: float | None = 1.1) -> float:
    engine = Answering(answer='{"setup": "a"}')
    configured = settings.model_copy(
        update={"engine": settings.engine.model_copy(update={"json_repetition_penalty": penalty})}
    )
    with ThreadedServer(configured, engine, free_port()) as server:
        answered = httpx.post(f"{server.base_url}{route}", json={"model": "twin", **body}, timeout=30)
    assert answered.status_code == 200, answered.text
    return engine.asked[-1][1].repetition_penalty


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
    assert penalty_asked(settings, "/v1/chat/completions", {"messages": ASK, **body}) == expected


def test_completions_too_and_none_turns_it_off(settings: Settings) -> None:
    body = {"prompt": "A joke as JSON:", "response_format": {"type": "json_object"}}
    assert penalty_asked(settings, "/v1/completions", body) == 1.1
    assert penalty_asked(settings, "/v1/completions", body, penalty=None) == 1.0
