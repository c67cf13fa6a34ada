"""A schema-aware fuzzer against a real server, on the schema it serves.

- Positive mode, every check schemathesis has: each answer's status is documented for its operation, its body
  and content type match the schema (SSE events included), schema-valid requests are accepted, and no 5xx but
  a deadline's 504.
- Negative mode (invalid requests): the same conformance checks, no 5xx, and every request the schema refuses
  is refused (negative_data_rejection: a recognised field the server cannot honour admits only its "off" values).

Some operations may answer a schema-valid request with a 400, because what they check is not a shape: an
uploaded file must be JSONL of requests (the fuzzer sends arbitrary bytes), a callback_url must resolve to a
public address (every async submit), SageMaker's /invocations takes any of six APIs' bodies, which its schema
leaves open (the body decides the API), and a TGI grammar's regex must compile (TGI's routes say 422 to one
that does not; the chat routes' structured_outputs.regex is the same rule, met less often by the fuzzer)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.conftest import ManagedServer
from tests.helpers import run

pytestmark = pytest.mark.slow

# Examples per operation in the fuzzing phase (the examples and coverage phases send theirs besides): most
# positive cases are sent, far fewer of the negative ones (schemathesis drops those it cannot encode as HTTP),
# hence more of them. 8 and 40 took 83 s and 25 s in `make test` here (12 and 60: 114 s and 44 s, most of it the
# server's CPU answering them).
EXAMPLES = {"positive": 8, "negative": 40}
CONFIG = """
[checks.not_a_server_error]
expected-statuses = ["1XX", "2XX", "3XX", "4XX", "504"]

# A request the schema refuses must be refused. 413 is a refusal too: the fuzzer breaks a maxLength with a
# string past the body limit, which the server refuses before reading it (schemathesis's list omits 413).
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]

[[operations]]
# Operation ids, not paths and methods: schemathesis joins include filters with "or". Every async submit (each
# takes a callback_url) is added from the served schema.
include-operation-id = [
    "V1FilesUpload",
    "InvocationsInvocations",
    "EndpointsEndpointNameInvocationsRuntimeInvocations",
    "GenerateGenerate",
    "GenerateStreamGenerateStream",
    "Compat",
    {async_submits}
]
checks.positive_data_acceptance.expected-statuses = ["2XX", "400", "401", "404", "409", "422", "429", "504"]
"""
CHECKS = {
    "positive": "all",
    "negative": (
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
        "negative_data_rejection"
    ),
}


# schemathesis 4.32's coverage phase crashes in negative mode inside hypothesis (a SystemError while it prints
# a strategy, before any request); its fuzzing phase generates the invalid requests all the same.
PHASES = {"positive": "examples,coverage,fuzzing", "negative": "examples,fuzzing"}
# Negative mode in one thread: two made CPython 3.11's ast module fail inside hypothesis now and then ("AST
# constructor recursion depth mismatch", a SystemError in a strategy's repr; the counter is shared between
# threads: python/cpython#106905). Its requests are mostly refused at once, so one worker costs little.
WORKERS = {"positive": "2", "negative": "1"}


def async_submits(base_url: str) -> list[str]:
    """The operations that take a callback_url, which must resolve to a public address: a schema-valid one may
    not (the schema cannot say it)."""
    schema = httpx.get(f"{base_url}/schema/openapi.json", timeout=30).json()
    ops = [op for item in schema["paths"].values() for op in item.values() if isinstance(op, dict)]
    found = [op["operationId"] for op in ops if any(p["name"] == "callback_url" for p in op.get("parameters", []))]
    assert len(found) >= 6, found  # chat, completions, responses, embeddings, rag, TGI's generate
    return found


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_the_fuzzer_finds_no_server_error(small_server: ManagedServer, tmp_path: Path, mode: str) -> None:
    server = small_server.up()
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.replace("{async_submits}", ", ".join(f'"{op}"' for op in async_submits(server.base_url))))
    report = tmp_path / "requests.har"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file", str(config),
        "run", f"{server.base_url}/schema/openapi.json",
        "--checks", CHECKS[mode],
        "--mode", mode,
        "--max-examples", str(EXAMPLES[mode]),
        "--phases", PHASES[mode],
        "--header", "X-Request-Timeout: 5",
        "--request-timeout", "30",
        "--workers", WORKERS[mode],
        "--seed", "20261125",
        "--no-shrink",
        "--suppress-health-check", "all",
        "--report", "har", "--report-har-path", str(report),
    ]  # fmt: skip
    result = run(command, 1200, cwd=tmp_path)  # its cache (.schemathesis/) stays out of the checkout
    # Every request the fuzzer sent and the status it got, from its HTTP Archive.
    statuses = Counter(str(entry["response"]["status"]) for entry in json.loads(report.read_text())["log"]["entries"])
    print(f"{mode}: {sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}")
    assert result.returncode == 0, result.stdout[-6000:]
    assert sum(statuses.values()) > 100, "the fuzzer ran"
    assert not {s for s in statuses if s.startswith("5") and s != "504"}, statuses
