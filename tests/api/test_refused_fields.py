"""Every field docs/api/openai.md lists as refused answers a 400 naming it (`error.param`), on the real server: a field
the server cannot honour is never silently ignored. The table follows that page's list, route by route."""

from __future__ import annotations

import httpx
import pytest

CHAT = {"model": "twin", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
COMPLETION = {"model": "twin", "prompt": "hi", "max_tokens": 2}
RESPONSE = {"model": "twin", "input": "hi", "max_output_tokens": 2}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
SCHEMA = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}

REFUSED = [
    ("/v1/completions", {**COMPLETION, "best_of": 2}, "best_of"),
    ("/v1/completions", {**COMPLETION, "suffix": "end"}, "suffix"),
    ("/v1/completions", {**COMPLETION, "max_tokens": 0}, "max_tokens"),  # without echo
    ("/v1/chat/completions", {**CHAT, "audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ("/v1/chat/completions", {**CHAT, "modalities": ["text", "audio"]}, "modalities"),
    ("/v1/chat/completions", {**CHAT, "prediction": {"type": "content", "content": "x"}}, "prediction"),
    ("/v1/chat/completions", {**CHAT, "web_search_options": {}}, "web_search_options"),
    ("/v1/chat/completions", {**CHAT, "functions": [TOOL["function"]]}, "functions"),
    ("/v1/chat/completions", {**CHAT, "function_call": "auto"}, "function_call"),
    ("/v1/chat/completions", {**CHAT, "store": True}, "store"),
    ("/v1/chat/completions", {**CHAT, "reasoning_effort": "low"}, "reasoning_effort"),
    ("/v1/chat/completions", {**CHAT, "top_logprobs": 2}, "top_logprobs"),  # without logprobs
    (  # vLLM's per-request option, inside structured_outputs; an engine-wide setting here (engine.compact_json)
        "/v1/chat/completions",
        {**CHAT, "structured_outputs": {"json_object": True, "disable_any_whitespace": True}},
        "structured_outputs",
    ),
    ("/v1/chat/completions", {**CHAT, "tools": [TOOL], "response_format": SCHEMA}, ("tools", "response_format")),
    ("/v1/chat/completions", {**CHAT, "tools": [TOOL], "rag": True}, ("tools", "rag")),
    ("/v1/responses", {**RESPONSE, "previous_response_id": "resp_1"}, "previous_response_id"),
    ("/v1/responses", {**RESPONSE, "conversation": "conv_1"}, "conversation"),
    ("/v1/responses", {**RESPONSE, "store": True}, "store"),
    ("/v1/responses", {**RESPONSE, "background": True}, "background"),
    ("/v1/responses", {**RESPONSE, "prompt": {"id": "pmpt_1"}}, "prompt"),
    ("/v1/responses", {**RESPONSE, "reasoning": {"effort": "low"}}, "reasoning"),
    ("/v1/responses", {**RESPONSE, "include": ["message.output_text.logprobs"]}, "include"),
    ("/v1/responses", {**RESPONSE, "top_logprobs": 2}, "top_logprobs"),
    ("/v1/responses", {**RESPONSE, "max_tool_calls": 1}, "max_tool_calls"),
    ("/v1/responses", {**RESPONSE, "context_management": [{"type": "compaction"}]}, "context_management"),
    ("/v1/responses", {**RESPONSE, "truncation": "auto"}, "truncation"),
    ("/v1/responses", {**RESPONSE, "service_tier": "flex"}, "service_tier"),
    ("/v1/responses", {**RESPONSE, "text": {"verbosity": "low"}}, "text"),
    (
        "/v1/responses",
        {**RESPONSE, "stream": True, "stream_options": {"include_obfuscation": True}},
        "stream_options",
    ),
    (
        "/v1/responses",
        {**RESPONSE, "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/a.png"}]}]},
        "input",
    ),
    ("/v1/responses", {**RESPONSE, "tools": [{"type": "web_search"}]}, "tools"),
]


@pytest.mark.parametrize(("path", "body", "param"), REFUSED, ids=lambda x: x if isinstance(x, str) else None)
def test_a_refused_field_is_a_400_naming_it(http: httpx.Client, path: str, body: dict, param: str | tuple) -> None:
    response = http.post(path, json=body)
    assert response.status_code == 400, f"{path} took it: {response.status_code} {response.text[:300]}"
    named = response.json()["error"]["param"] or ""
    assert named.startswith(param), f"{path}: the 400 names {named!r}, not {param!r}: {response.text[:300]}"


TGI = {"inputs": "hi", "parameters": {"max_new_tokens": 2}}


def tgi(**parameters: object) -> dict:
    return {**TGI, "parameters": {**TGI["parameters"], **parameters}}


# Values that look like "off" to Python (0 == False, True == 1, "" is falsy) and are not what the schema admits
# (JSON Schema's enum tells true from 1 and 0 from false): refused like any other value. TGI's are in test_tgi.py
# (a 422 in TGI's shape).
NOT_QUITE_OFF = [
    ("/v1/chat/completions", {**CHAT, "store": 0}, "store"),
    ("/v1/chat/completions", {**CHAT, "best_of": True}, "best_of"),
    ("/v1/completions", {**COMPLETION, "best_of": True}, "best_of"),
    ("/v1/responses", {**RESPONSE, "store": 0}, "store"),
    ("/v1/responses", {**RESPONSE, "background": ""}, "background"),
    ("/v1/responses", {**RESPONSE, "include": ""}, "include"),
    ("/v1/responses", {**RESPONSE, "reasoning": {"effort": ""}}, "reasoning"),
    (
        "/v1/responses",
        {**RESPONSE, "stream": True, "stream_options": {"include_obfuscation": 0}},
        "stream_options.include_obfuscation",
    ),
]
# The values each of those fields does admit: the default, said out loud.
OFF = [
    ("/v1/chat/completions", {**CHAT, "store": False, "best_of": 1}),
    ("/v1/completions", {**COMPLETION, "best_of": 1.0}),
    ("/v1/responses", {**RESPONSE, "store": False, "background": False, "include": [], "reasoning": {"effort": None}}),
    ("/generate", tgi(watermark=False, best_of=1, adapter_id=None)),
]


@pytest.mark.parametrize(("path", "body", "param"), NOT_QUITE_OFF, ids=lambda x: x if isinstance(x, str) else None)
def test_a_value_only_python_calls_off_is_refused(http: httpx.Client, path: str, body: dict, param: str) -> None:
    response = http.post(path, json=body)
    assert response.status_code == 400, f"{path} took it: {response.status_code} {response.text[:300]}"
    assert response.json()["error"]["param"] == param, response.text[:300]


@pytest.mark.parametrize(("path", "body"), OFF, ids=lambda x: x if isinstance(x, str) else None)
def test_the_off_value_of_a_refused_field_is_accepted(http: httpx.Client, path: str, body: dict) -> None:
    response = http.post(path, json=body)
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:300]}"
