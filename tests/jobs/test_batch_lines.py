"""Batch transform: line parsing and resume bookkeeping (fast), then the real CLI on 200 lines (slow)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from monolith.bench.otlp import OtlpReceiver
from monolith.bench.peers import kill_tree
from monolith.config import Settings
from monolith.errors import NotReady
from monolith.jobs.lines import done_custom_ids, needs_retrieval, parse_line, written
from monolith.retrieval.pipeline import RetrievalOff
from monolith.work import Work
from tests.helpers import eventually, run

ROOT = Path(__file__).resolve().parents[2]


def test_parse_line_keeps_the_custom_id_of_a_bad_line() -> None:
    ok = json.dumps({"custom_id": "a", "method": "POST", "url": "/rag", "body": {"query": "q"}}).encode()
    assert parse_line(ok, 1)[1].url == "/rag"
    custom_id, request, error = parse_line(b'{"custom_id": "b", "url": "/v1/moderations", "body": {}}', 2)
    assert (custom_id, request) == ("b", None) and error.param == "url"
    custom_id, request, error = parse_line(b"{nope", 3)
    assert custom_id == "line-3" and "not JSON" in error.message
    custom_id, _, error = parse_line(b'{"custom_id": "c", "method": "GET", "url": "/rag", "body": {}}', 4)
    assert custom_id == "c" and error.param == "method"


def test_resume_drops_a_torn_last_line_and_counts_outcomes(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    a = b'{"custom_id": "a", "response": {"status_code": 200}}\n'
    b = b'{"custom_id": "b", "response": {"status_code": 400}}\n'
    output.write_bytes(a + b + b'{"custom_id": "c", "resp')
    assert written(output) == {"a": True, "b": False}
    assert output.read_bytes() == a + b
    assert done_custom_ids(output) == {"a", "b"}


def batch_lines(count: int) -> list[str]:
    lines = []
    for i in range(count):
        if i % 40 == 7:  # malformed in several ways
            lines.append(["{not json", json.dumps({"custom_id": f"x{i}"})][(i // 40) % 2])
        elif i % 40 == 13:
            body = {"model": "twin", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}
            lines.append(
                json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body})
            )
        elif i % 10 == 3:
            body = {"query": f"How do I deploy an LLM? ({i})", "max_tokens": 4, "expand": False, "k": 2}
            lines.append(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/rag", "body": body}))
        else:
            message = {"role": "user", "content": f"Say {i}"}
            body = {"model": "twin", "messages": [message], "max_tokens": 4, "ignore_eos": True}
            lines.append(
                json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body})
            )
    return lines


@pytest.mark.slow
def test_batch_of_200_lines_interrupted_and_resumed(
    tmp_path: Path, model_dir: Path, otlp_receiver: OtlpReceiver
) -> None:
    lines = batch_lines(200)
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("\n".join(lines) + "\n")
    env = {
        **os.environ,
        "MONOLITH_DATA_DIR": str(tmp_path / "data"),
        "MONOLITH_ENGINE__MODEL": str(model_dir),
        "MONOLITH_INGEST__SAMPLE_CORPUS": str(ROOT / "corpus" / "sample.jsonl"),
    }
    command = [sys.executable, "-m", "monolith.cli", "batch", str(source), str(output), "--max-in-flight", "16"]

    # First run: killed once some lines are written (the store is empty, so it also needs the corpus).
    first = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:

        def thirty_written() -> bool:
            assert first.poll() is None, first.stdout.read().decode()[-3000:]
            return output.exists() and output.read_text().count("\n") >= 30

        eventually(thirty_written, 600, "30 lines written before the kill", 0.2)
    finally:
        kill_tree(first)  # with its engine core, which would otherwise outlive it
    written_before = output.read_text().count("\n")
    assert 30 <= written_before < 200

    # The second run traced, as any run can be: a trace for the run, a span per line it answered.
    caller_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    traced = {**env, **otlp_receiver.env(), "TRACEPARENT": f"00-{caller_trace}-{caller_span}-01"}
    second = run(command, 900, cwd=ROOT, env=traced)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "already done" in second.stdout and "lines/s" in second.stdout
    (batch,) = [s for s in otlp_receiver.spans if s.name == "batch in.jsonl" and s.links == [caller_span]]
    line_spans = [s for s in otlp_receiver.trace(batch.trace_id) if s.name == "batch.line"]
    assert len(line_spans) == 200 - written_before and {s.parent_id for s in line_spans} == {batch.span_id}
    generations = [s for s in otlp_receiver.trace(batch.trace_id) if s.name.startswith("text_completion")]
    assert generations and {s.parent_id for s in generations} <= {s.span_id for s in line_spans}

    results = [json.loads(line) for line in output.read_text().splitlines()]
    ids = Counter(r["custom_id"] for r in results)
    assert len(ids) == 200 and max(ids.values()) == 1, "every line answered exactly once"
    failed = {r["custom_id"] for r in results if r["error"]}
    expected_failures = {f"line-{i + 1}" for i in range(200) if i % 40 == 7 and (i // 40) % 2 == 0}
    expected_failures |= {f"x{i}" for i in range(200) if i % 40 == 7 and (i // 40) % 2 == 1}
    expected_failures |= {f"r{i}" for i in range(200) if i % 40 == 13}
    assert failed == expected_failures
    for r in results:
        if r["custom_id"] in failed:
            assert r["response"]["status_code"] == 400 and r["error"]["message"]
        else:
            assert r["response"]["status_code"] == 200
            body = r["response"]["body"]
            if "answer" in body:
                assert body["answer"].strip() and body["sources"], r
            else:
                assert body["choices"][0]["message"]["content"].strip(), r
                assert body["usage"]["completion_tokens"] == 4, r


@pytest.mark.parametrize(
    ("line", "needed"),
    [
        ({"url": "/v1/chat/completions", "body": {"model": "twin", "messages": []}}, False),
        ({"url": "/v1/completions", "body": {"model": "twin", "prompt": "hi"}}, False),
        ({"url": "/rag", "body": {"query": "hi"}}, True),
        ({"url": "/v1/chat/completions", "body": {"model": "twin-rag", "messages": []}}, True),
        ({"url": "/v1/chat/completions", "body": {"model": "twin", "rag": {"k": 2}, "messages": []}}, True),
        ({"url": "/v1/embeddings", "body": {"model": "all-MiniLM-L6-v2", "input": "hi"}}, True),
        ({"url": "/v1/responses", "body": {"model": "twin", "input": "hi"}}, False),
        ({"url": "/v1/responses", "body": {"model": "twin-rag", "input": "hi"}}, True),
    ],
)
def test_a_batch_loads_retrieval_only_when_a_line_asks_for_rag(
    tmp_path: Path, settings: Settings, line: dict, needed: bool
) -> None:
    source = tmp_path / "in.jsonl"
    plain = {"custom_id": "a", "url": "/v1/chat/completions", "body": {"model": "twin", "messages": []}}
    source.write_text(f"{json.dumps(plain)}\nnot json at all\n{json.dumps({'custom_id': 'b', **line})}\n")
    assert needs_retrieval(source, settings) is needed


def test_a_rag_request_without_loaded_retrieval_is_a_clear_503() -> None:
    with pytest.raises(NotReady, match="retrieval is not loaded"):
        asyncio.run(RetrievalOff().retrieve("hi", None, "r1", Work(), {}))  # type: ignore[arg-type]
