"""Real-time first inside the engine (vLLM's priority policy, the default): on an engine of one slot, with an
async job running and a batch line waiting for that slot, a real-time request that arrives after the batch line
is served before it. Order, not time. (Under scheduling.policy fcfs the same test fails: the batch line, first
in, goes first.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.test_health import metric_samples
from tests.api.test_jobs import wait_for, wait_for_job
from tests.conftest import ManagedServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[ManagedServer]:
    env = {
        "MONOLITH_ENGINE__MAX_NUM_SEQS": "1",
        "MONOLITH_JOBS__MAX_SHARE": "1.0",  # one job and one batch line at once: the line waits in the engine
    }
    managed = ManagedServer(tmp_path_factory.mktemp("one-slot"), model_dir, env)
    try:
        yield managed
    finally:
        managed.stop()


def lane(http: httpx.Client, name: str, which: str) -> float:
    samples = metric_samples(http.get("/metrics").text).get(name, [])
    return next((s.value for s in samples if s.labels.get("lane") == which), 0.0)


def chat(tokens: int, stream: bool = False) -> dict:
    return {
        "model": "twin",
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": tokens,
        "ignore_eos": True,
        "temperature": 0,
        "stream": stream,
    }


def test_a_real_time_request_goes_before_a_batch_line_that_waited_longer(one_slot: ManagedServer) -> None:
    with httpx.Client(base_url=one_slot.up().base_url, timeout=300) as http:
        job_id = http.post("/v1/async/chat/completions", json=chat(120)).json()["id"]
        wait_for(lambda: lane(http, "monolith_lane_running", "async") >= 1, 60, "the job to hold the engine's slot")
        line = {"custom_id": "line", "method": "POST", "url": "/v1/chat/completions", "body": chat(60)}
        upload = http.post(
            "/v1/files", files={"file": ("in.jsonl", json.dumps(line).encode())}, data={"purpose": "batch"}
        )
        batch_id = http.post(
            "/v1/batches", json={"input_file_id": upload.json()["id"], "endpoint": "/v1/chat/completions"}
        ).json()["id"]
        wait_for(lambda: lane(http, "monolith_lane_waiting", "batch") >= 1, 60, "the batch line to wait for the slot")
        assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "running", "the slot is still the job's"

        realtime = http.post("/v1/chat/completions", json=chat(4))
        counts = http.get(f"/v1/batches/{batch_id}").json()["request_counts"]
        assert realtime.status_code == 200 and realtime.json()["usage"]["completion_tokens"] == 4
        assert counts["completed"] + counts["failed"] == 0, "the batch line, in the engine first, went after it"
        assert wait_for_job(http, job_id)["status"] == "succeeded"
        done = wait_for(
            lambda: (b := http.get(f"/v1/batches/{batch_id}").json())["status"] == "completed" and b, 120, "the batch"
        )
        assert done["request_counts"] == {"total": 1, "completed": 1, "failed": 0}
        ttft = {
            s.labels["lane"]
            for s in metric_samples(http.get("/metrics").text)["monolith_time_to_first_token_seconds_count"]
        }
        assert {"realtime", "async", "batch"} <= ttft
