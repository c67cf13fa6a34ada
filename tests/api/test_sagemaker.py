"""SageMaker's container contract on the real server: /ping, /invocations dispatching by body shape (streamed
and not), batch transform's JSON Lines, /execution-parameters; and the system this replaces, boto3's
`invoke_endpoint` with TGI's payload, through a loopback stand-in of SageMaker's front end (tests.helpers)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import boto3
import httpx
import pytest
from litestar.testing import AsyncTestClient

from monolith.api.app import create_app
from monolith.config import Settings
from monolith.runtime import Phase, Runtime
from tests.api.test_health import ClosableStub
from tests.conftest import ServerProcess
from tests.helpers import SageMakerFrontEnd

PROMPT = "The capital of France is"
TGI_PAYLOAD = {
    "inputs": PROMPT,
    "parameters": {
        "max_new_tokens": 20,
        "top_p": 0.9,
        "temperature": 0.01,
        "return_full_text": False,
        "repetition_penalty": 1.1,
    },
}
JSONLINES = {"content-type": "application/jsonlines"}


@pytest.fixture
def front(server: ServerProcess) -> Iterator[SageMakerFrontEnd]:
    stand_in = SageMakerFrontEnd(server.base_url)
    try:
        yield stand_in
    finally:
        stand_in.close()


def runtime_client(front: SageMakerFrontEnd):
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=front.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_boto3_invoke_endpoint_with_tgi_s_payload_reads_generated_text(front: SageMakerFrontEnd) -> None:
    client = runtime_client(front)
    answered = client.invoke_endpoint(
        EndpointName="twin", ContentType="application/json", Body=json.dumps(TGI_PAYLOAD).encode()
    )
    text = json.loads(answered["Body"].read())[0]["generated_text"]  # the business service's exact line
    assert text and not text.startswith(PROMPT)
    assert answered["ContentType"].startswith("application/json")
    assert front.paths == ["/endpoints/twin/invocations"]
    full = {**TGI_PAYLOAD, "parameters": {**TGI_PAYLOAD["parameters"], "return_full_text": True}}
    again = client.invoke_endpoint(
        EndpointName="twin",
        ContentType="application/json",
        Body=json.dumps(full).encode(),
        CustomAttributes="trace=1",  # SageMaker's header reaches the container and changes nothing
    )
    assert json.loads(again["Body"].read())[0]["generated_text"].startswith(PROMPT)


async def test_ping_is_503_while_loading_and_200_with_an_empty_body_after(settings: Settings) -> None:
    release = asyncio.Event()

    async def slow_loader(state: Runtime) -> None:
        await release.wait()
        state.phase, state.detail = Phase.READY, "ready"
        state.services = ClosableStub()  # type: ignore[assignment]

    async with AsyncTestClient(app=create_app(settings, loader=slow_loader)) as client:
        assert (await client.get("/ping")).status_code == 503
        assert (await client.post("/ping")).status_code == 503
        release.set()
        await asyncio.sleep(0.05)
        for answered in (await client.get("/ping"), await client.post("/ping")):
            assert answered.status_code == 200 and answered.content == b""


def test_ping_answers_within_two_seconds_while_sixteen_streams_generate(server: ServerProcess) -> None:
    body = {"model": "twin", "prompt": "Write a story.", "max_tokens": 120, "ignore_eos": True, "stream": True}
    started = threading.Barrier(17)

    def stream() -> None:
        with httpx.stream("POST", f"{server.base_url}/v1/completions", json=body, timeout=300) as response:
            lines = response.iter_lines()
            next(lines)
            started.wait()
            for _ in lines:
                pass

    threads = [threading.Thread(target=stream) for _ in range(16)]
    for thread in threads:
        thread.start()
    started.wait()
    slowest = 0.0
    for _ in range(5):
        sent = time.monotonic()
        assert httpx.get(f"{server.base_url}/ping", timeout=10).status_code == 200
        slowest = max(slowest, time.monotonic() - sent)
        time.sleep(0.2)
    for thread in threads:
        thread.join()
    assert slowest < 2.0, slowest


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        ({"model": "twin", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}, "chat.completion"),
        ({"model": "twin", "prompt": PROMPT, "max_tokens": 4}, "text_completion"),
        ({"model": "all-MiniLM-L6-v2", "input": ["one", "two"]}, "list"),
        ({"model": "twin", "input": [{"role": "user", "content": "Hi"}], "max_output_tokens": 16}, "response"),
        ({"model": "twin", "input": "Hi", "max_output_tokens": 16}, "response"),
    ],
)
def test_invocations_dispatch_by_body_shape(http: httpx.Client, body: dict, expect: str) -> None:
    answered = http.post("/invocations", json=body)
    assert answered.status_code == 200, answered.text
    assert answered.json()["object"] == expect


def test_invocations_with_the_rag_model_answer_with_sources(http: httpx.Client) -> None:
    body = {"model": "twin-rag", "messages": [{"role": "user", "content": "How do I deploy an LLM?"}], "max_tokens": 8}
    answered = http.post("/invocations", json=body)
    assert answered.status_code == 200, answered.text
    assert "sources" in answered.json()
    rag = http.post("/invocations", json={"query": "How do I deploy an LLM?", "max_tokens": 8})
    assert rag.status_code == 200 and "sources" in rag.json(), rag.text


def sse_events(http: httpx.Client, body: dict) -> list[dict]:
    with http.stream("POST", "/invocations", json=body) as answered:
        assert answered.status_code == 200
        assert answered.headers["content-type"].startswith("text/event-stream")
        data = [line[5:].strip() for line in answered.iter_lines() if line.startswith("data:")]
    return [json.loads(d) for d in data if d != "[DONE]"]


def test_invocations_stream_when_asked(http: httpx.Client) -> None:
    tgi = sse_events(http, {**TGI_PAYLOAD, "stream": True, "parameters": {"max_new_tokens": 5}})
    assert len(tgi) == 5 and tgi[-1]["generated_text"] == "".join(e["token"]["text"] for e in tgi)
    chat = sse_events(
        http, {"model": "twin", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": True}
    )
    assert chat[0]["object"] == "chat.completion.chunk"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"model": "twin"}', "no API takes this body"),
        (b"[1, 2]", "JSON object"),
        (b"not json", "not JSON"),
        (b'{"model": "twin", "messages": "hi"}', "messages"),
        (b'{"input": "a string, no model: embeddings, which need a model"}', "model"),
    ],
)
def test_bodies_no_api_takes_are_a_400_saying_why(http: httpx.Client, content: bytes, says: str) -> None:
    answered = http.post("/invocations", content=content, headers={"content-type": "application/json"})
    assert answered.status_code == 400, answered.text
    assert says in json.dumps(answered.json())


def test_a_tgi_payload_s_error_is_tgi_s(http: httpx.Client) -> None:
    answered = http.post("/invocations", json={"inputs": PROMPT, "parameters": {"top_p": 1.0}})
    assert answered.status_code == 422 and answered.json()["error_type"] == "validation"


def test_batch_transform_answers_a_line_per_line_in_order_and_a_bad_line_with_its_error(http: httpx.Client) -> None:
    lines = [
        json.dumps({"inputs": "One", "parameters": {"max_new_tokens": 2}}),
        "{broken",
        json.dumps({"model": "twin", "prompt": "Three", "max_tokens": 2}),
    ]
    answered = http.post("/invocations", content="\n".join(lines) + "\n", headers=JSONLINES)
    assert answered.status_code == 200 and answered.headers["content-type"].startswith("application/jsonlines")
    out = [json.loads(line) for line in answered.text.splitlines()]
    assert len(out) == 3
    assert out[0][0]["generated_text"]
    assert out[1]["error"]["type"] == "invalid_request_error" and "record 2" in out[1]["error"]["message"]
    assert out[2]["object"] == "text_completion"


def test_batch_transform_keeps_two_hundred_records_in_order(http: httpx.Client) -> None:
    lines = [json.dumps({"model": "twin", "prompt": f"Record {i}:", "max_tokens": 1}) for i in range(200)]
    answered = http.post("/invocations", content="\n".join(lines), headers=JSONLINES)
    assert answered.status_code == 200
    out = [json.loads(line) for line in answered.text.splitlines()]
    assert len(out) == 200 and all(o["object"] == "text_completion" for o in out)
    # Each answer's usage counts its own prompt: in order, "Record 9:" and "Record 10:" differ in tokens.
    echoed = [
        json.dumps({"model": "twin", "prompt": f"Record {i}:", "max_tokens": 1, "echo": True}) for i in range(200)
    ]
    texts = [
        json.loads(line)["choices"][0]["text"]
        for line in http.post("/invocations", content="\n".join(echoed), headers=JSONLINES).text.splitlines()
    ]
    assert [t.split(":")[0] for t in texts] == [f"Record {i}" for i in range(200)]


def test_execution_parameters_say_what_batch_transform_should_send(http: httpx.Client, settings: Settings) -> None:
    params = http.get("/execution-parameters").json()
    assert params == {
        "MaxConcurrentTransforms": settings.engine.max_num_seqs,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 6,
    }


def test_invocations_take_sagemaker_s_six_megabytes_where_other_routes_stop_at_the_body_limit(
    http: httpx.Client, settings: Settings
) -> None:
    assert settings.server.max_body_bytes < 2_000_000, "the test's premise: a 2 MB body is over the usual limit"
    big = {"model": "twin", "prompt": "word " * 400_000, "max_tokens": 1}  # 2 MB
    assert http.post("/v1/completions", json=big).status_code == 413
    answered = http.post("/invocations", json=big)
    assert answered.status_code == 400 and answered.json()["error"]["param"] == "prompt", "read, then too long"
    huge = {"model": "twin", "prompt": "word " * 1_300_000, "max_tokens": 1}  # 6.5 MB
    assert http.post("/invocations", json=huge).status_code == 413
