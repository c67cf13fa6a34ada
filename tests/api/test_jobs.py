"""Asynchronous inference against the real server: 202 + poll, cancel, callbacks, idempotency, 4xx at submit."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import msgspec
import pytest

from monolith.jobs.callbacks import verify
from tests.api.test_health import gauge, wait_idle
from tests.conftest import CALLBACK_SECRET
from tests.helpers import Receiver, eventually

TERMINAL = {"succeeded", "failed", "cancelled"}


def wait_for_job(http: httpx.Client, job_id: str, timeout_s: float = 300) -> dict:
    def finished() -> dict | None:
        job = http.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in TERMINAL else None

    return eventually(finished, timeout_s, f"job {job_id} to finish", interval_s=0.2)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_async_rag_answers_202_then_the_result(http: httpx.Client) -> None:
    response = http.post("/v1/async/rag", json={"query": "What is a KV cache?", "max_tokens": 8, "expand": False})
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "queued" and accepted["id"].startswith("job-")
    assert response.headers["location"] == accepted["status_url"] == f"/v1/jobs/{accepted['id']}"
    job = wait_for_job(http, accepted["id"])
    assert job["status"] == "succeeded", job
    assert job["result"]["answer"] and job["result"]["sources"]
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    listed = http.get("/v1/jobs", params={"status": "succeeded", "limit": 1000}).json()
    assert accepted["id"] in {j["id"] for j in listed["data"]}


def test_async_chat_answers_like_the_real_time_route(http: httpx.Client) -> None:
    body = {"model": "twin", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6}
    job = wait_for_job(http, http.post("/v1/async/chat/completions", json=body).json()["id"])
    assert job["result"]["object"] == "chat.completion"
    assert 0 < job["result"]["usage"]["completion_tokens"] <= 6


@pytest.mark.parametrize(
    ("route", "body", "kind"),
    [
        (
            "/v1/completions",
            {"model": "twin", "prompt": "Once upon a time", "max_tokens": 5, "temperature": 0},
            "completion",
        ),
        ("/v1/responses", {"model": "twin", "input": "Say hi", "max_output_tokens": 5, "temperature": 0}, "response"),
        ("/v1/embeddings", {"model": "all-MiniLM-L6-v2", "input": ["a cat", "a dog"]}, "embedding"),
    ],
)
def test_every_registry_route_runs_as_an_async_job_with_the_real_time_answer(
    http: httpx.Client, route: str, body: dict, kind: str
) -> None:
    """The async twin of each route (/v1/async/...) answers what the route itself answers (greedy, so equal)."""
    accepted = http.post(route.replace("/v1/", "/v1/async/", 1), json=body)
    assert accepted.status_code == 202, accepted.text
    job = wait_for_job(http, accepted.json()["id"])
    assert job["status"] == "succeeded" and job["kind"] == kind, job
    live = http.post(route, json=body).json()
    result = job["result"]
    if kind == "embedding":
        assert [len(d["embedding"]) for d in result["data"]] == [384, 384]
        for mine, theirs in zip(result["data"], live["data"], strict=True):
            assert max(abs(a - b) for a, b in zip(mine["embedding"], theirs["embedding"], strict=True)) < 1e-5
        assert result["usage"] == live["usage"]
    elif kind == "completion":
        assert result["object"] == "text_completion" and result["choices"][0]["text"] == live["choices"][0]["text"]
        assert result["usage"] == live["usage"]
    else:
        assert result["object"] == "response" and result["status"] in ("completed", "incomplete")
        assert result["output"][0]["content"][0]["text"] == live["output"][0]["content"][0]["text"]


def test_cancel_aborts_a_running_job(http: httpx.Client) -> None:
    wait_idle(http)
    body = {
        "model": "twin",
        "messages": [{"role": "user", "content": "A long story"}],
        "max_tokens": 1000,
        "ignore_eos": True,
    }
    job_id = http.post("/v1/async/chat/completions", json=body).json()["id"]
    eventually(lambda: http.get(f"/v1/jobs/{job_id}").json()["status"] == "running", 60, "the job to run")
    eventually(lambda: gauge(http, "monolith_requests_running") >= 1, 60, "the job's generation to produce tokens")
    cancelled = http.delete(f"/v1/jobs/{job_id}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    job = wait_for_job(http, job_id)
    assert job["status"] == "cancelled" and job["result"] is None
    # The engine request was aborted: nothing generates, and the runner holds no job (heartbeat: 2 s).
    eventually(lambda: gauge(http, "monolith_requests_running") == 0, 10, "the generation to stop")
    eventually(lambda: gauge(http, "monolith_async_running") == 0, 10, "the runner to let the job go")
    eventually(lambda: gauge(http, "monolith_async_backlog") == 0, 10, "the backlog gauge to reach 0")


def test_callback_is_delivered_signed(http: httpx.Client, receiver: Receiver) -> None:
    body = {"query": "How do I deploy an LLM?", "max_tokens": 6, "expand": False, "self_query": False}
    job_id = http.post("/v1/async/rag", params={"callback_url": receiver.url}, json=body).json()["id"]
    wait_for_job(http, job_id)
    deadline = time.monotonic() + 30
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.1)
    headers, payload = receiver.received[0]
    assert verify(CALLBACK_SECRET, headers, payload)
    delivered = msgspec.json.decode(payload)
    assert delivered["id"] == job_id and delivered["status"] == "succeeded" and delivered["result"]["answer"]
    assert http.get(f"/v1/jobs/{job_id}").json()["callback"]["state"] == "delivered"


def test_idempotency_key_returns_the_first_job(http: httpx.Client) -> None:
    body = {"query": "What is DPO?", "max_tokens": 4, "expand": False, "self_query": False}
    first = http.post("/v1/async/rag", json=body, headers={"Idempotency-Key": "same-key"}).json()
    again = http.post("/v1/async/rag", json=body, headers={"Idempotency-Key": "same-key"})
    assert again.status_code == 202 and again.json()["id"] == first["id"]
    other = http.post("/v1/async/rag", json={**body, "query": "x"}, headers={"Idempotency-Key": "same-key"})
    assert other.status_code == 409
    assert wait_for_job(http, first["id"])["status"] == "succeeded"  # leaves the shared server idle


def test_an_empty_idempotency_key_is_a_400_each_time(http: httpx.Client) -> None:
    """An empty key was taken as none by the lookup and stored as a key: the second submit hit the unique
    constraint and answered 500 (found by the positive-mode fuzzer)."""
    body = {"query": "What is DPO?", "max_tokens": 4}
    for _ in range(2):
        response = http.post("/v1/async/rag", json=body, headers={"Idempotency-Key": ""})
        assert response.status_code == 400 and response.json()["error"]["param"] == "Idempotency-Key"


@pytest.mark.parametrize(
    ("route", "body", "param"),
    [
        ("/v1/async/rag", {"query": ""}, "query"),
        ("/v1/async/rag", {"query": "hi", "max_tokens": 5000}, "max_tokens"),
        ("/v1/async/rag", {"query": "hi", "stream": True}, "stream"),
        ("/v1/async/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}, "model"),
        (
            "/v1/async/chat/completions",
            {"model": "twin", "messages": [{"role": "user", "content": "a " * 3000}]},
            "messages",
        ),
        ("/v1/async/completions", {"model": "twin", "prompt": "x", "max_tokens": 5000}, "max_tokens"),
        ("/v1/async/completions", {"model": "twin", "prompt": "x", "stream": True}, "stream"),
        (
            "/v1/async/responses",
            {"model": "twin", "input": "x", "previous_response_id": "resp_1"},
            "previous_response_id",
        ),
        ("/v1/async/responses", {"model": "twin", "input": "x", "max_output_tokens": 5000}, "max_output_tokens"),
        ("/v1/async/embeddings", {"model": "nope", "input": "x"}, "model"),
        ("/v1/async/embeddings", {"model": "all-MiniLM-L6-v2", "input": "word " * 400}, "input"),
    ],
)
def test_invalid_submissions_are_rejected_at_submit_time(
    http: httpx.Client, route: str, body: dict, param: str
) -> None:
    before = http.get("/v1/jobs", params={"limit": 1000}).json()["data"]
    response = http.post(route, json=body)
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["param"] == param
    assert len(http.get("/v1/jobs", params={"limit": 1000}).json()["data"]) == len(before)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x",
        "http://[::1",
        "http://127.0.0.1:9000/hook",  # loopback by address: only `localhost` is allowed on the test servers
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://0.0.0.0/",
        "http://2130706433/",
        "http://user:pw@0x7f000001:8080/hook",
    ],
)
def test_a_callback_url_that_is_malformed_or_not_public_is_a_400(http: httpx.Client, url: str) -> None:
    before = len(http.get("/v1/jobs", params={"limit": 1000}).json()["data"])
    bad = http.post("/v1/async/rag", params={"callback_url": url}, json={"query": "hi"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "callback_url", bad.text
    assert len(http.get("/v1/jobs", params={"limit": 1000}).json()["data"]) == before


def test_a_job_body_never_shows_the_callback_urls_credentials_or_token(http: httpx.Client, receiver: Receiver) -> None:
    url = receiver.url.replace("http://", "http://user:s3cret@") + "/TOKEN123?sig=abc"
    body = {"query": "What is DPO?", "max_tokens": 2, "expand": False, "self_query": False}
    job_id = http.post("/v1/async/rag", params={"callback_url": url}, json=body).json()["id"]
    job = wait_for_job(http, job_id)
    eventually(lambda: receiver.received, 30, "the callback")
    shown = http.get(f"/v1/jobs/{job_id}").json()["callback"]["url"]
    assert shown == receiver.url.rsplit("/", 1)[0] + "/…", shown
    for secret in ("s3cret", "TOKEN123", "sig=abc"):
        assert secret not in json.dumps(job) and secret not in receiver.received[0][1].decode()


def test_too_large_payload_is_a_413(http: httpx.Client) -> None:
    big = http.post("/v1/async/rag", json={"query": "x" * 1_100_000})
    assert big.status_code == 413


def test_unknown_job_is_a_404(http: httpx.Client) -> None:
    assert http.get("/v1/jobs/job-nope").status_code == 404
    assert http.delete("/v1/jobs/job-nope").status_code == 404
