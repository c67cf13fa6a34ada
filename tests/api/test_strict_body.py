"""A JSON body is held to its schema's types (api/strict_body.py): Litestar's lax conversion would take `1` for
`true` and `"16"` for 16, which the served schema and OpenAI's API refuse. Each is a 400 naming the field (TGI's
routes: its 422), and a body that keeps to the schema is served as before."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from monolith.config import Settings
from tests.conftest import free_port
from tests.scripted import ScriptedEngine, ThreadedServer

CHAT = {"model": "twin", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
LAX = [
    ("/v1/chat/completions", {**CHAT, "stream": 1}, "stream"),
    ("/v1/chat/completions", {**CHAT, "max_tokens": "3"}, "max_tokens"),
    ("/v1/chat/completions", {**CHAT, "temperature": "0.5"}, "temperature"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ("/v1/completions", {"model": "twin", "prompt": "hi", "max_tokens": 3, "echo": 0}, "echo"),
    ("/v1/async/chat/completions", {**CHAT, "n": "1"}, "n"),
]
TGI_LAX = [
    ({"decoder_input_details": 0}, "parameters.decoder_input_details"),
    ({"details": "true"}, "parameters.details"),
    ({"max_new_tokens": "3"}, "parameters.max_new_tokens"),
]


@pytest.fixture
def server(settings: Settings) -> Iterator[ThreadedServer]:
    with ThreadedServer(settings, ScriptedEngine(gap_s=0.001), free_port(), jobs=True) as running:
        yield running


@pytest.mark.parametrize(("path", "body", "param"), LAX, ids=[f"{p} {n}" for p, _, n in LAX])
def test_a_value_of_the_wrong_json_type_is_a_400_naming_it(
    server: ThreadedServer, path: str, body: dict, param: str
) -> None:
    response = httpx.post(server.base_url + path, json=body, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param, response.text


@pytest.mark.parametrize(("parameters", "param"), TGI_LAX, ids=[n for _, n in TGI_LAX])
def test_tgi_says_so_in_its_own_shape(server: ThreadedServer, parameters: dict, param: str) -> None:
    for path in ("/generate", "/generate_stream", "/"):
        response = httpx.post(server.base_url + path, json={"inputs": "hi", "parameters": parameters}, timeout=10)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error_type"] == "validation" and param in response.json()["error"], response.text


def test_a_body_that_keeps_to_the_schema_is_served(server: ThreadedServer) -> None:
    # An integer where a number goes is a number; a number with no fraction where an integer goes is an integer
    # (JSON Schema's rule: the fuzzer sends `"priority": 0.0`).
    chat = {**CHAT, "temperature": 1, "max_tokens": 3.0, "priority": 0.0}
    answer = httpx.post(server.base_url + "/v1/chat/completions", json=chat, timeout=10)
    assert answer.status_code == 200, answer.text
    fraction = httpx.post(server.base_url + "/v1/chat/completions", json={**CHAT, "max_tokens": 2.5}, timeout=10)
    assert fraction.status_code == 400 and fraction.json()["error"]["param"] == "max_tokens", fraction.text
    tgi = httpx.post(server.base_url + "/generate", json={"inputs": "hi", "parameters": {"max_new_tokens": 3}})
    assert tgi.status_code == 200, tgi.text
