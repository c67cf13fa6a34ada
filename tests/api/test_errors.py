"""Bad input gets a 4xx with a JSON body naming the field; never a 500. On the real app over a scripted engine
(`scripted`): none of it needs real tokens, and `make test-quick` runs it."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"query": ""}, "query"),
        ({"query": "   "}, "query"),
        ({"query": "x" * 2001}, "query"),
        ({"query": 5}, "query"),
        ({}, "query"),
        ({"query": "hi", "max_tokens": 0}, "max_tokens"),
        ({"query": "hi", "max_tokens": 5000}, "max_tokens"),
        ({"query": "hi", "temperature": 2.5}, "temperature"),
        ({"query": "hi", "temperature": "hot"}, "temperature"),
        ({"query": "hi", "k": 0}, "k"),
        ({"query": "hi", "stream": "yes"}, "stream"),
        ({"query": "hi", "bogus": 1}, "bogus"),
    ],
)
def test_rag_rejects_bad_input_naming_the_field(scripted: httpx.Client, body: dict, param: str) -> None:
    response = scripted.post("/rag", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "hi"}], "rag": {"kk": 1}}, "rag.kk"),
        ({"messages": [{"role": "user", "content": "hi"}], "response_format": {}}, "response_format.type"),
        ({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}, "tools[0].function"),
    ],
)
def test_a_nested_missing_or_unknown_field_is_named_by_its_path(scripted: httpx.Client, body: dict, param: str) -> None:
    response = scripted.post("/v1/chat/completions", json={"model": "twin", **body})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_malformed_json_is_a_400(scripted: httpx.Client) -> None:
    response = scripted.post("/rag", content=b'{"query": ', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "malformed" in response.json()["error"]["message"].lower()


def test_prompt_longer_than_the_context_window_is_a_400_naming_the_prompt(scripted: httpx.Client) -> None:
    prompt = "deploy the model " * 1500  # ~4500 tokens, above max_model_len 2048
    response = scripted.post("/v1/completions", json={"model": "twin", "prompt": prompt, "max_tokens": 8})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "prompt"
    assert "context window" in error["message"]


def test_chat_messages_longer_than_the_context_window_is_a_400(scripted: httpx.Client) -> None:
    messages = [{"role": "user", "content": "tell me about serving " * 1200}]
    response = scripted.post("/v1/chat/completions", json={"model": "twin", "messages": messages})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages"


def test_oversized_body_is_a_413(scripted: httpx.Client) -> None:
    response = scripted.post("/rag", json={"query": "x" * 1_100_000})
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"


def test_unknown_route_is_a_json_404(scripted: httpx.Client) -> None:
    response = scripted.get("/no/such/route")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


@pytest.mark.parametrize(
    ("prompt", "param", "words"),
    [
        ([], "prompt", "empty"),
        ([[]], "prompt[0]", "empty"),
        (["text", [1, 2]], "prompt", "not a mix"),
        ([1, "two"], "prompt", "not a mix"),
        ([5, -1], "prompt", "vocabulary"),
        ([[5], [10**9]], "prompt", "vocabulary"),
        ([1.5], "prompt[0]", ""),
        ({"text": "hi"}, "prompt", ""),
    ],
)
def test_completions_reject_malformed_prompts(scripted: httpx.Client, prompt: object, param: str, words: str) -> None:
    response = scripted.post("/v1/completions", json={"model": "twin", "prompt": prompt, "max_tokens": 2})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert words in error["message"]


def test_openai_unknown_model_is_a_404_naming_the_model(scripted: httpx.Client) -> None:
    response = scripted.post(
        "/v1/chat/completions", json={"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "model"


def test_openai_wrong_role_is_a_400_naming_the_field(scripted: httpx.Client) -> None:
    response = scripted.post(
        "/v1/chat/completions", json={"model": "twin", "messages": [{"role": "robot", "content": "x"}]}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[0].role"
