"""The served OpenAPI schema says what the server does: OpenAI's error body for every documented error, the
statuses each route can answer, enums as enums, bounds as the server checks them (the configured max-tokens
limit, the model's vocabulary). tests/api/test_fuzz.py holds the server to it request by request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_args

import httpx
import pytest

from monolith.serving.registry import ENDPOINTS, BatchEndpoint
from monolith.store.jobs import STATUSES

LIMIT = 1024  # MONOLITH_ENGINE__MAX_TOKENS_LIMIT of the tests' server (tests.conftest.start_server)
GENERATION = ["/v1/chat/completions", "/v1/completions", "/v1/responses", "/rag"]


@pytest.fixture(scope="module")
def schema(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/schema/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def component(schema: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    return schema["components"]["schemas"][ref["$ref"].rsplit("/", 1)[-1]]


OPENAI_ERROR = {"$ref": "#/components/schemas/ErrorResponse"}
TGI_ERROR = {"$ref": "#/components/schemas/TgiError"}
TGI_ROUTES = ("/generate", "/generate_stream", "/")


def test_every_documented_error_has_the_openai_error_body(schema: dict[str, Any]) -> None:
    """OpenAI's on every route but TGI's own (TGI's {"error", "error_type"}) and SageMaker's /invocations (either,
    by the payload: a 400 is OpenAI's, a 422 TGI's)."""
    errors = 0
    for path, method, operation in operations(schema):
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                body = response["content"]["application/json"]["schema"]
                if path in TGI_ROUTES:
                    expected = TGI_ERROR
                elif path.endswith("/invocations"):
                    expected = {"400": OPENAI_ERROR, "422": TGI_ERROR}.get(status, {"oneOf": [OPENAI_ERROR, TGI_ERROR]})
                else:
                    expected = OPENAI_ERROR
                assert body == expected, (path, method, status)
                errors += 1
    tgi = component(schema, TGI_ERROR)
    assert set(tgi["properties"]) == {"error", "error_type"} and set(tgi["required"]) == {"error", "error_type"}
    assert "400" not in schema["paths"]["/generate"]["post"]["responses"], "TGI says 422"
    assert errors > 100
    error = schema["components"]["schemas"]["ErrorResponse"]
    assert error["required"] == ["error"]
    assert set(component(schema, error["properties"]["error"])["properties"]) == {"message", "type", "param", "code"}


def test_every_route_documents_the_statuses_it_can_answer(schema: dict[str, Any]) -> None:
    for path in GENERATION:
        documented = set(schema["paths"][path]["post"]["responses"])
        assert {"200", "400", "401", "413", "429", "503", "504"} <= documented, path
        assert "404" in documented  # an unknown model (/rag's `model`, a twin's name)
    assert set(schema["paths"]["/health/ready"]["get"]["responses"]) == {"200", "503"}
    assert "409" in schema["paths"]["/v1/files/{file_id}"]["delete"]["responses"]
    assert "507" in schema["paths"]["/v1/files"]["post"]["responses"]
    assert {"404", "409", "429"} <= set(schema["paths"]["/v1/async/chat/completions"]["post"]["responses"])
    for path, method, operation in operations(schema):
        if path not in ("/health/live", "/health/ready", "/ping"):
            assert "401" in operation["responses"], (path, method)  # once the server has API keys


def test_routes_that_stream_document_server_sent_events(schema: dict[str, Any]) -> None:
    for path in GENERATION:
        content = schema["paths"][path]["post"]["responses"]["200"]["content"]
        assert set(content) == {"application/json", "text/event-stream"}, path
        assert content["text/event-stream"]["schema"]["required"] == ["data"]
    submit = schema["paths"]["/v1/async/rag"]["post"]
    assert "text/event-stream" not in submit["responses"]["202"].get("content", {})
    assert {"properties": {"stream": {"enum": [False]}}} in submit["requestBody"]["content"]["application/json"][
        "schema"
    ]["allOf"]


def test_enum_like_fields_are_enums(schema: dict[str, Any]) -> None:
    batch = schema["components"]["schemas"]["BatchCreate"]["properties"]
    assert set(batch["endpoint"]["enum"]) == set(ENDPOINTS) == set(get_args(BatchEndpoint))
    jobs = {p["name"]: p for p in schema["paths"]["/v1/jobs"]["get"]["parameters"]}
    assert [s for s in jobs["status"]["schema"]["enum"] if s is not None] == list(STATUSES)
    upload = schema["components"]["schemas"]["FileUpload"]["properties"]
    assert upload["purpose"].get("enum", [upload["purpose"].get("const")]) == ["batch"]
    files = {p["name"]: p for p in schema["paths"]["/v1/files"]["get"]["parameters"]}
    assert {"batch", "batch_output"} <= set(files["purpose"]["schema"]["enum"])


def test_bounds_are_the_ones_the_server_checks(schema: dict[str, Any], http: httpx.Client) -> None:
    chat = schema["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    integer = next(b for b in chat["max_tokens"]["anyOf"] if b.get("type") == "integer")
    assert integer["maximum"] == LIMIT
    assert chat["top_p"]["exclusiveMinimum"] == 0.0  # Litestar's own rendering dropped it
    assert chat["audio"]["enum"] == [None]  # recognised, refused: only null is valid
    # The largest token id the schema allows is the largest the model has.
    top = schema["components"]["schemas"]["DetokenizeRequest"]["properties"]["tokens"]["items"]["maximum"]
    assert http.post("/detokenize", json={"tokens": [top]}).status_code == 200
    over = http.post("/detokenize", json={"tokens": [top + 1]})
    assert over.status_code == 400 and over.json()["error"]["param"] == "tokens"


def test_rules_that_types_cannot_say_are_in_the_schema(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert len(components["TokenizeRequest"]["oneOf"]) == 2  # a prompt or messages
    assert components["ChatMessage"]["allOf"][0]["then"]["required"] == ["tool_call_id"]
    assert components["InputItem"]["allOf"][0]["then"]["required"] == ["call_id", "name", "arguments"]
