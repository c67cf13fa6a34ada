"""Traces from a real server to a real OTLP/HTTP receiver (monolith.bench.otlp), configured only by OTEL_* variables:
the caller's trace continues through the server span into the engine's generation span, with the GenAI semantic
conventions' attributes, and comes back in a `traceresponse` header. The configuration itself, the sampler and
the generation span's edge cases: tests/test_tracing.py."""

from __future__ import annotations

import json
import re
import secrets

import httpx
import pytest

from monolith.bench.otlp import OtlpReceiver, Span
from tests.conftest import ManagedServer
from tests.helpers import Receiver, eventually

pytestmark = pytest.mark.slow

SERVER, INTERNAL = 2, 1  # the protobuf's span kinds
# What Prometheus sends when it scrapes (it prefers OpenMetrics, where exemplars are).
PROMETHEUS_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
# A histogram bucket's exemplar in an OpenMetrics exposition: the metric, then the ids (labels in sorted order).
EXEMPLAR = re.compile(r'^(\w+)_bucket\{[^}]*\} \S+ # \{span_id="(\w+)",trace_id="(\w+)"\}', re.M)


@pytest.fixture(scope="module")
def traced(small_server: ManagedServer) -> httpx.Client:
    return httpx.Client(base_url=small_server.up().base_url, timeout=120)


def caller() -> tuple[str, str, str]:
    """A caller's own trace and span ids, and the traceparent that carries them (sampled)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def one(spans: list[Span], prefix: str) -> Span:
    found = [s for s in spans if s.name.startswith(prefix)]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


CHAT = {"model": "twin", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4}


def test_a_callers_trace_continues_through_the_server_into_the_engine(
    traced: httpx.Client, otlp_receiver: OtlpReceiver
) -> None:
    trace_id, parent, traceparent = caller()
    response = traced.post("/v1/chat/completions", json=CHAT, headers={"traceparent": traceparent})
    assert response.status_code == 200, response.text
    version, returned_trace, server_span_id, flags = response.headers["traceresponse"].split("-")
    assert (version, returned_trace, flags) == ("00", trace_id, "01")

    spans = otlp_receiver.wait_for(trace_id, {"POST /v1/chat/completions", "text_completion"})
    server = one(spans, "POST /v1/chat/completions")
    assert server.kind == SERVER and server.parent_id == parent and server.span_id == server_span_id
    assert server.attributes["http.route"] == "/v1/chat/completions"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["monolith.request_id"] == response.headers["x-request-id"]
    assert server.resource["service.name"] == "monolith-under-test" and "admitted" in server.events

    generation = one(spans, "text_completion twin")
    usage = response.json()["usage"]
    assert generation.parent_id == server.span_id and generation.kind == INTERNAL
    assert generation.attributes["gen_ai.operation.name"] == "text_completion"
    assert generation.attributes["gen_ai.request.model"] == generation.attributes["gen_ai.response.model"] == "twin"
    assert generation.attributes["gen_ai.request.max_tokens"] == 4
    assert generation.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert generation.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert generation.attributes["gen_ai.response.finish_reasons"] == [response.json()["choices"][0]["finish_reason"]]
    assert generation.attributes["monolith.lane"] == "realtime"
    assert generation.attributes["monolith.time_to_first_token_s"] > 0 and "first_token" in generation.events
    # The engine's own account, as `vllm serve` names it: prefill and the first token take time, decode may not.
    assert generation.attributes["gen_ai.latency.time_in_queue"] >= 0
    assert generation.attributes["gen_ai.latency.time_in_model_prefill"] > 0
    assert (
        generation.attributes["gen_ai.latency.time_in_model_prefill"]
        < generation.attributes["gen_ai.latency.time_to_first_token"]
        <= generation.attributes["monolith.time_to_first_token_s"] + 0.05
    )
    assert generation.attributes["gen_ai.latency.time_in_model_decode"] >= 0
    assert generation.attributes["monolith.engine.preemptions"] == 0
    assert "Say hello" not in str(generation.attributes), "no message content without the opt-in"


def test_a_stream_is_one_generation_span_with_every_token(traced: httpx.Client, otlp_receiver: OtlpReceiver) -> None:
    trace_id, _, traceparent = caller()
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}
    with traced.stream("POST", "/v1/chat/completions", json=body, headers={"traceparent": traceparent}) as response:
        assert response.status_code == 200
        events = [line for line in response.iter_lines() if line.startswith("data: {")]
    assert '"completion_tokens":4' in events[-1].replace(" ", "")
    generation = one(otlp_receiver.wait_for(trace_id, {"POST /v1/chat/completions", "text_completion"}), "text_")
    assert generation.attributes["gen_ai.usage.output_tokens"] == 4
    assert generation.attributes["gen_ai.response.finish_reasons"] == ["length"]


def test_a_rag_answer_is_one_tree(traced: httpx.Client, otlp_receiver: OtlpReceiver) -> None:
    trace_id, parent, traceparent = caller()
    body = {"query": "How do I deploy an LLM?", "max_tokens": 4, "self_query": False}
    response = traced.post("/rag", json=body, headers={"traceparent": traceparent})
    assert response.status_code == 200, response.text
    spans = otlp_receiver.wait_for(trace_id, {"POST /rag", "text_completion", "rag.embed", "rag.search", "rag.rerank"})
    server = one(spans, "POST /rag")
    assert server.parent_id == parent
    generations = [s for s in spans if s.name.startswith("text_completion")]
    assert generations and all(g.parent_id == server.span_id for g in generations)
    embed, search, rerank = one(spans, "rag.embed"), one(spans, "rag.search"), one(spans, "rag.rerank")
    assert {embed.parent_id, search.parent_id, rerank.parent_id} == {server.span_id}
    assert search.attributes["db.system.name"] == "qdrant" and search.attributes["rag.queries"] == 1
    sources = response.json()["sources"]
    assert search.attributes["rag.hits"] >= len(sources) > 0  # the small server reranks (a tiny cross-encoder)
    assert rerank.attributes["rag.candidates"] >= len(sources)
    assert "rag.relevance_floor" in server.events


def test_without_a_traceparent_a_new_trace_starts_and_comes_back(
    traced: httpx.Client, otlp_receiver: OtlpReceiver
) -> None:
    for headers in (
        {},
        {"traceparent": "00-not-a-trace-01"},
        {"traceparent": "00-" + "0" * 32 + "-" + "1" * 16 + "-01"},
    ):
        response = traced.get("/v1/models", headers=headers)
        assert response.status_code == 200
        _, trace_id, _, flags = response.headers["traceresponse"].split("-")
        assert int(trace_id, 16) != 0 and int(flags, 16) & 1, "sampled (a new root also says its id is random)"
        server = one(otlp_receiver.wait_for(trace_id, {"GET /v1/models"}), "GET")
        assert server.parent_id == "", "a malformed or all-zero traceparent starts a new trace"


def test_a_refused_request_is_traced_with_its_status(traced: httpx.Client, otlp_receiver: OtlpReceiver) -> None:
    trace_id, _, traceparent = caller()
    response = traced.post(
        "/v1/chat/completions", json={**CHAT, "model": "nobody"}, headers={"traceparent": traceparent}
    )
    assert response.status_code == 404
    server = one(otlp_receiver.wait_for(trace_id, {"POST /v1/chat/completions"}), "POST")
    assert server.attributes["http.response.status_code"] == 404 and server.status != 2, "a 4xx is not a server error"
    assert not [s for s in otlp_receiver.trace(trace_id) if s.name.startswith("text_completion")]


def test_a_caller_that_samples_out_gets_no_spans_exported(traced: httpx.Client, otlp_receiver: OtlpReceiver) -> None:
    """The default sampler follows the parent: a traceparent with the sampled flag off records nothing."""
    trace_id, span_id, _ = caller()
    response = traced.post("/v1/chat/completions", json=CHAT, headers={"traceparent": f"00-{trace_id}-{span_id}-00"})
    assert response.status_code == 200 and response.headers["traceresponse"].endswith("-00")
    marker, _, marked = caller()  # a sampled request after it: once its spans are in, the first one's would be too
    traced.get("/v1/models", headers={"traceparent": marked})
    otlp_receiver.wait_for(marker, {"GET /v1/models"})
    assert otlp_receiver.trace(trace_id) == []


def test_an_async_job_runs_in_a_trace_linked_to_its_submit_and_its_callback_carries_it(
    traced: httpx.Client, otlp_receiver: OtlpReceiver
) -> None:
    trace_id, _, traceparent = caller()
    hook = Receiver()
    try:
        submitted = traced.post(
            "/v1/async/chat/completions",
            json=CHAT,
            params={"callback_url": hook.url},
            headers={"traceparent": traceparent},
        )
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        eventually(lambda: hook.received, 60, "the job's callback")
    finally:
        hook.close()
    submit = one(otlp_receiver.wait_for(trace_id, {"POST /v1/async/chat/completions"}), "POST")
    headers = {name.lower(): value for name, value in hook.received[0][0].items()}
    assert headers["traceparent"] == f"00-{trace_id}-{submit.span_id}-01", "the caller's trace, at its submit"

    def run_span() -> Span | None:
        return next((s for s in otlp_receiver.spans if s.attributes.get("monolith.job.id") == job_id), None)

    run = eventually(run_span, 30, "the job's run span")
    assert run.name == "job chat" and run.trace_id != trace_id and run.parent_id == ""
    assert run.links == [submit.span_id], "the run links to the span that submitted it"
    assert run.attributes["monolith.job.kind"] == "chat"
    generation = one(otlp_receiver.wait_for(run.trace_id, {"text_completion"}), "text_completion")
    assert generation.parent_id == run.span_id and generation.attributes["monolith.lane"] == "async"


def test_a_batch_runs_in_a_trace_linked_to_its_creation_with_a_span_per_line(
    traced: httpx.Client, otlp_receiver: OtlpReceiver
) -> None:
    lines = [
        json.dumps({"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions", "body": CHAT})
        for i in range(2)
    ]
    uploaded = traced.post(
        "/v1/files", files={"file": ("in.jsonl", "\n".join(lines).encode())}, data={"purpose": "batch"}
    )
    assert uploaded.status_code == 200, uploaded.text
    trace_id, _, traceparent = caller()
    body = {"input_file_id": uploaded.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    created = traced.post("/v1/batches", json=body, headers={"traceparent": traceparent})
    assert created.status_code == 200, created.text
    batch_id = created.json()["id"]
    eventually(lambda: traced.get(f"/v1/batches/{batch_id}").json()["status"] == "completed", 120, "the batch")
    create = one(otlp_receiver.wait_for(trace_id, {"POST /v1/batches"}), "POST")

    def run_span() -> Span | None:
        return next((s for s in otlp_receiver.spans if s.attributes.get("monolith.batch.id") == batch_id), None)

    run = eventually(run_span, 30, "the batch's run span")
    assert run.name == "batch /v1/chat/completions" and run.links == [create.span_id] and run.parent_id == ""
    spans = otlp_receiver.wait_for(run.trace_id, {"batch.line", "text_completion"})
    line_spans = [s for s in spans if s.name == "batch.line"]
    assert sorted(s.attributes["monolith.batch.custom_id"] for s in line_spans) == ["line-0", "line-1"]
    assert all(s.parent_id == run.span_id for s in line_spans)

    def line_generations() -> list[Span]:
        found = [s for s in otlp_receiver.trace(run.trace_id) if s.name.startswith("text_completion")]
        return found if len(found) == 2 else []

    generations = eventually(line_generations, 30, "a generation span per line")
    assert {g.parent_id for g in generations} == {s.span_id for s in line_spans}
    assert all(g.attributes["monolith.lane"] == "batch" for g in generations)


def test_an_openmetrics_scrape_shows_a_traced_requests_ids_as_exemplars(
    traced: httpx.Client, otlp_receiver: OtlpReceiver
) -> None:
    trace_id, _, traceparent = caller()
    assert traced.post("/v1/chat/completions", json=CHAT, headers={"traceparent": traceparent}).status_code == 200
    server = one(otlp_receiver.wait_for(trace_id, {"POST /v1/chat/completions"}), "POST")

    scrape = traced.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
    assert scrape.headers["content-type"].startswith("application/openmetrics-text")
    # A bucket keeps its latest exemplar: this request's is in the bucket it fell in.
    exemplars = {(name, trace, span) for name, span, trace in EXEMPLAR.findall(scrape.text)}
    assert ("monolith_time_to_first_token_seconds", trace_id, server.span_id) in exemplars
    assert ("monolith_request_duration_seconds", trace_id, server.span_id) in exemplars
    assert scrape.text.rstrip().endswith("# EOF")

    plain = traced.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain") and " # {" not in plain.text


def test_log_lines_are_json_and_a_traced_requests_carry_its_trace_id(
    small_server: ManagedServer, traced: httpx.Client, otlp_receiver: OtlpReceiver
) -> None:
    trace_id, _, traceparent = caller()
    assert traced.post("/v1/chat/completions", json=CHAT, headers={"traceparent": traceparent}).status_code == 200
    server = one(otlp_receiver.wait_for(trace_id, {"POST /v1/chat/completions"}), "POST")
    lines = small_server.up().log().splitlines()
    ready = next(i for i, line in enumerate(lines) if "ready in" in line)
    started = [json.loads(line) for line in lines[: ready + 1] if line.startswith("{")]
    after = [json.loads(line) for line in lines[ready + 1 :] if line.strip()]  # every one: none may fail to parse

    keys = {"asctime", "levelname", "name", "processName", "process", "message"}
    assert all(keys <= line.keys() for line in started + after)
    # vLLM's lines, from this process and from its engine core's, in the same form as ours.
    assert {"MainProcess", "EngineCore"} <= {line["processName"] for line in started if line["name"].startswith("vllm")}
    assert any(line["name"] == "monolith.runtime" and line["message"].startswith("ready in") for line in started)
    access = [line for line in after if line["name"] == "uvicorn.access" and line.get("trace_id") == trace_id]
    assert len(access) == 1 and access[0]["span_id"] == server.span_id
    assert "POST /v1/chat/completions" in access[0]["message"] and "trace_id=" not in access[0]["message"]


def test_a_sagemaker_mini_batch_is_a_span_per_record(traced: httpx.Client, otlp_receiver: OtlpReceiver) -> None:
    trace_id, _, traceparent = caller()
    good = json.dumps({"inputs": "Say hello.", "parameters": {"max_new_tokens": 2}})
    body = f"{good}\nnot json\n{good}\n"
    headers = {"traceparent": traceparent, "content-type": "application/jsonlines"}
    answered = traced.post("/invocations", content=body, headers=headers)
    assert answered.status_code == 200 and len(answered.text.splitlines()) == 3

    spans = otlp_receiver.wait_for(trace_id, {"POST /invocations", "sagemaker.record", "text_completion"})
    server = one(spans, "POST /invocations")
    records = {s.attributes["monolith.sagemaker.record"]: s for s in spans if s.name == "sagemaker.record"}
    assert sorted(records) == [1, 2, 3] and {s.parent_id for s in records.values()} == {server.span_id}
    assert records[2].events == ["record.failed"] and not records[1].events
    generations = [s for s in spans if s.name.startswith("text_completion")]
    assert sorted(records[n].span_id for n in (1, 3)) == sorted(s.parent_id for s in generations)
