"""The openai client's batch flow against the real server: upload, create, poll, download."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from openai import BadRequestError, NotFoundError, OpenAI


def write_requests(path: Path, count: int) -> Path:
    lines = []
    for i in range(count):
        body = {"model": "twin", "messages": [{"role": "user", "content": f"Say {i}"}], "max_tokens": 4}
        lines.append(
            json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body})
        )
    lines.append(json.dumps({"custom_id": "wrong-url", "method": "POST", "url": "/rag", "body": {"query": "q"}}))
    # Well-formed, so the upload takes it (a malformed line is refused at upload, tests/api/test_bounds.py);
    # invalid for the route, so its output line carries the 400.
    bad = {"model": "twin", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}
    lines.append(json.dumps({"custom_id": "zero-tokens", "method": "POST", "url": "/v1/chat/completions", "body": bad}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_openai_client_batch_flow_completes(openai_client: OpenAI, tmp_path: Path) -> None:
    with write_requests(tmp_path / "requests.jsonl", 12).open("rb") as f:
        uploaded = openai_client.files.create(file=f, purpose="batch")
    assert uploaded.id.startswith("file-") and uploaded.bytes > 0
    batch = openai_client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status in {"validating", "in_progress"}
    deadline = time.monotonic() + 300
    while batch.status not in {"completed", "failed", "cancelled"} and time.monotonic() < deadline:
        time.sleep(0.5)
        batch = openai_client.batches.retrieve(batch.id)
    assert batch.status == "completed", batch
    assert batch.request_counts.total == 14
    assert (batch.request_counts.completed, batch.request_counts.failed) == (12, 2)
    lines = [json.loads(x) for x in openai_client.files.content(batch.output_file_id).text.splitlines()]
    assert [line["custom_id"] for line in lines] == [f"req-{i}" for i in range(12)], "in input order"
    assert lines[0]["response"]["body"]["object"] == "chat.completion"
    assert batch.error_file_id, "OpenAI's error file holds the failed lines"
    failed = [json.loads(x) for x in openai_client.files.content(batch.error_file_id).text.splitlines()]
    by_id = {line["custom_id"]: line for line in failed}
    assert list(by_id) == ["wrong-url", "zero-tokens"]
    assert by_id["wrong-url"]["error"]["message"] and by_id["zero-tokens"]["response"]["status_code"] == 400
    assert batch.id in {b.id for b in openai_client.batches.list()}


def run_to_completion(openai_client: OpenAI, path: Path, endpoint: str) -> dict[str, dict]:
    with path.open("rb") as f:
        uploaded = openai_client.files.create(file=f, purpose="batch")
    batch = openai_client.batches.create(input_file_id=uploaded.id, endpoint=endpoint, completion_window="24h")
    deadline = time.monotonic() + 300
    while batch.status not in {"completed", "failed", "cancelled"} and time.monotonic() < deadline:
        time.sleep(0.5)
        batch = openai_client.batches.retrieve(batch.id)
    assert batch.status == "completed", batch
    lines = [json.loads(x) for x in openai_client.files.content(batch.output_file_id).text.splitlines()]
    if batch.error_file_id:
        lines += [json.loads(x) for x in openai_client.files.content(batch.error_file_id).text.splitlines()]
    return {line["custom_id"]: line["response"] for line in lines}


def test_responses_and_embeddings_run_as_batches(openai_client: OpenAI, tmp_path: Path) -> None:
    """OpenAI's batch API takes /v1/responses and /v1/embeddings lines too; each answer is the route's own."""
    responses = tmp_path / "responses.jsonl"
    lines = [
        {
            "custom_id": "r1",
            "url": "/v1/responses",
            "body": {"model": "twin", "input": "Say hi", "max_output_tokens": 4},
        },
        {"custom_id": "bad", "url": "/v1/responses", "body": {"model": "twin", "input": "hi", "store": True}},
    ]
    responses.write_text("".join(json.dumps({"method": "POST", **line}) + "\n" for line in lines))
    answered = run_to_completion(openai_client, responses, "/v1/responses")
    assert answered["r1"]["status_code"] == 200 and answered["r1"]["body"]["object"] == "response"
    assert answered["r1"]["body"]["usage"]["output_tokens"] > 0
    assert answered["bad"]["status_code"] == 400 and answered["bad"]["body"]["error"]["param"] == "store"
    vectors = tmp_path / "embeddings.jsonl"
    body = {"model": "all-MiniLM-L6-v2", "input": ["a cat", "a dog"]}
    vectors.write_text(json.dumps({"custom_id": "e1", "method": "POST", "url": "/v1/embeddings", "body": body}) + "\n")
    embedded = run_to_completion(openai_client, vectors, "/v1/embeddings")["e1"]
    direct = openai_client.embeddings.create(
        model="all-MiniLM-L6-v2", input=["a cat", "a dog"], encoding_format="float"
    )
    batched = np.array([d["embedding"] for d in embedded["body"]["data"]])
    assert np.allclose(batched, np.array([d.embedding for d in direct.data]), atol=1e-5)


def test_batch_rejects_a_bad_endpoint_and_a_missing_file(openai_client: OpenAI, tmp_path: Path) -> None:
    with write_requests(tmp_path / "r.jsonl", 1).open("rb") as f:
        uploaded = openai_client.files.create(file=f, purpose="batch")
    with pytest.raises(BadRequestError):
        openai_client.batches.create(input_file_id=uploaded.id, endpoint="/v1/moderations", completion_window="24h")
    with pytest.raises(NotFoundError):
        openai_client.batches.create(input_file_id="file-nope", endpoint="/v1/completions", completion_window="24h")


def test_upload_needs_purpose_batch(http: httpx.Client) -> None:
    response = http.post("/v1/files", files={"file": ("a.jsonl", b"{}\n")}, data={"purpose": "fine-tune"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "purpose"
