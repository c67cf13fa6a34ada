"""Async jobs and HTTP batches run on spare capacity of the real engine, as docs/api/jobs.md promises: with no
real-time traffic a backlog fills every engine slot, none starts while a real-time request waits, a real-time
request's first token barely later than on an idle server (it preempts a background generation); batches side by
side, cancellable, resumed after the server is killed."""

from __future__ import annotations

import json
import signal
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from monolith.bench.peers import kill_tree
from tests.api.test_health import gauge
from tests.conftest import ManagedServer, managed_server
from tests.helpers import eventually

pytestmark = pytest.mark.slow

MAX_NUM_SEQS = 4


@pytest.fixture(scope="module")
def spare(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[ManagedServer]:
    env = {
        "MONOLITH_ENGINE__MAX_NUM_SEQS": str(MAX_NUM_SEQS),
        "MONOLITH_SCHEDULING__REALTIME_QUIET_S": "1",  # the backlog has the engine a second after real-time leaves
        "MONOLITH_STORE__LEASE_S": "6",  # a killed server's batch is free again by the time it restarts
    }
    with managed_server(tmp_path_factory.mktemp("spare"), model_dir, env) as managed:
        yield managed


def first_token_s(client: httpx.Client) -> float:
    """Seconds from sending a streamed completion to its first token."""
    body = {"model": "twin", "prompt": "The weather today is", "max_tokens": 2, "stream": True, "ignore_eos": True}
    started = time.monotonic()
    with client.stream("POST", "/v1/completions", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["text"]:
                return time.monotonic() - started
    raise AssertionError("no token")


def median_first_token_s(client: httpx.Client) -> float:
    return statistics.median(first_token_s(client) for _ in range(3))


def long_job(tokens: int) -> dict:
    messages = [{"role": "user", "content": "Tell me a long story."}]
    return {"model": "twin", "messages": messages, "max_tokens": tokens, "ignore_eos": True}


class Sampler:
    """Samples a gauge every 50 ms in the background: the largest value seen."""

    def __init__(self, client: httpx.Client, name: str) -> None:
        self.client, self.name, self.peak = client, name, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, gauge(self.client, self.name))
            time.sleep(0.05)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cancel_all(client: httpx.Client, ids: list[str]) -> None:
    for job_id in ids:
        client.delete(f"/v1/jobs/{job_id}")
    eventually(lambda: gauge(client, "monolith_async_running") == 0, 30, "the runner to let go of every job")


def test_a_job_backlog_fills_the_engine_and_real_time_first_tokens_stay_fast(spare: ManagedServer) -> None:
    with httpx.Client(base_url=spare.up().base_url, timeout=120) as client:
        idle = median_first_token_s(client)
        ids = [client.post("/v1/async/chat/completions", json=long_job(150)).json()["id"] for _ in range(8)]
        try:
            with Sampler(client, "monolith_async_running") as running:
                eventually(lambda: gauge(client, "monolith_async_running") >= MAX_NUM_SEQS, 60, "the engine to fill")
                loaded = median_first_token_s(client)
                time.sleep(2)
            queued = [j["status"] for j in client.get("/v1/jobs", params={"limit": 1000}).json()["data"]]
        finally:
            cancel_all(client, ids)
    assert running.peak == MAX_NUM_SEQS, "with no real-time traffic, every slot; never more"
    assert queued.count("queued") >= 8 - MAX_NUM_SEQS - 1, "the rest of the backlog waits"
    # Had no job given way, the real-time request would wait for a 150-token job to end (~10 s here).
    assert loaded < max(1.5, 5 * idle), (idle, loaded)
    print(f"time to first token: idle {idle:.3f} s, beside a full engine of jobs {loaded:.3f} s")


def test_no_job_starts_while_a_real_time_request_waits(spare: ManagedServer) -> None:
    base_url = spare.up().base_url
    first_tokens: list[float] = []  # wall-clock time each real-time stream got its first token

    def stream() -> None:
        body = {"model": "twin", "prompt": "Write a story.", "max_tokens": 60, "ignore_eos": True, "stream": True}
        with httpx.stream("POST", f"{base_url}/v1/completions", json=body, timeout=300) as response:
            lines = response.iter_lines()
            for line in lines:
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["text"]:
                    first_tokens.append(time.time())
                    break
            for _ in lines:  # to the end: a stream left early would be aborted, freeing its slot
                pass

    with httpx.Client(base_url=base_url, timeout=120) as client:
        streams = [threading.Thread(target=stream) for _ in range(2 * MAX_NUM_SEQS)]  # half of them wait
        for thread in streams:
            thread.start()
        eventually(lambda: gauge(client, "monolith_queue_depth") >= 1, 30, "real-time requests waiting")
        submitted = time.time()
        job_id = client.post("/v1/async/chat/completions", json=long_job(4)).json()["id"]
        for thread in streams:
            thread.join()
        job = eventually(
            lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["status"] == "succeeded" and j, 60, "the job"
        )
    last_waiting = max(first_tokens)
    assert len(first_tokens) == 2 * MAX_NUM_SEQS and last_waiting - submitted > 1, "real-time requests did wait"
    # The job started only once the last waiting real-time request was generating (the client sees the
    # first token a moment after the server does).
    assert job["started_at"] >= last_waiting - 0.2, (job["started_at"] - submitted, last_waiting - submitted)
    assert job["result"]["usage"]["completion_tokens"] == 4


def batch_file(client: httpx.Client, lines: int, tokens: int) -> str:
    rows = []
    for i in range(lines):
        body = {"model": "twin", "prompt": f"Line {i}:", "max_tokens": tokens, "ignore_eos": True}
        rows.append(json.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/completions", "body": body}))
    uploaded = client.post("/v1/files", files={"file": ("in.jsonl", "\n".join(rows))}, data={"purpose": "batch"})
    assert uploaded.status_code == 200, uploaded.text
    return uploaded.json()["id"]


def create_batch(client: httpx.Client, file_id: str) -> str:
    body = {"input_file_id": file_id, "endpoint": "/v1/completions", "completion_window": "24h"}
    response = client.post("/v1/batches", json=body)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def test_batches_run_side_by_side_behind_real_time_traffic_and_cancel(spare: ManagedServer) -> None:
    """Two batches on one replica: each gets a shard (round-robin, batch.shards_per_replica 2), a real-time
    request's first token barely later beside them, and a cancel ends each with the lines it answered."""
    with httpx.Client(base_url=spare.up().base_url, timeout=120) as client:
        idle = median_first_token_s(client)
        file_id = batch_file(client, 40, 24)
        first, second = create_batch(client, file_id), create_batch(client, file_id)

        def status(batch_id: str) -> dict:
            return client.get(f"/v1/batches/{batch_id}").json()

        def both_running() -> bool:
            return all(status(b)["request_counts"]["completed"] >= 2 for b in (first, second))

        eventually(both_running, 120, "both batches to run")
        loaded = median_first_token_s(client)
        for batch_id in (first, second):
            cancelled = client.post(f"/v1/batches/{batch_id}/cancel").json()
            assert cancelled["status"] in {"cancelling", "cancelled"}, cancelled
        outputs = []
        for batch_id in (first, second):
            ended = eventually(lambda b=batch_id: (x := status(b))["status"] == "cancelled" and x, 30, "the cancel")
            output = client.get(f"/v1/files/{ended['output_file_id']}/content").text.splitlines()
            ids = [json.loads(line)["custom_id"] for line in output]
            assert 2 <= len(ids) < 40 and ended["request_counts"]["completed"] == len(ids), ended["request_counts"]
            assert len(set(ids)) == len(ids)
            outputs.append(len(ids))
    assert loaded < max(1.5, 5 * idle), (idle, loaded)
    print(f"time to first token: idle {idle:.3f} s, beside two running batches {loaded:.3f} s; lines {outputs}")


def test_a_batch_resumes_after_the_server_is_killed(spare: ManagedServer) -> None:
    server = spare.up()
    with httpx.Client(base_url=server.base_url, timeout=120) as client:
        batch_id = create_batch(client, batch_file(client, 60, 12))
        eventually(
            lambda: client.get(f"/v1/batches/{batch_id}").json()["request_counts"]["completed"] >= 10, 120, "lines"
        )
    kill_tree(server.proc)
    with httpx.Client(base_url=spare.up().base_url, timeout=120) as client:
        done = eventually(
            lambda: (b := client.get(f"/v1/batches/{batch_id}").json())["status"] == "completed" and b, 300, "resume"
        )
        output = client.get(f"/v1/files/{done['output_file_id']}/content").text.splitlines()
    answered = Counter(json.loads(line)["custom_id"] for line in output)
    assert answered == Counter({f"c{i}": 1 for i in range(60)}), "each line answered once across the restart"
    assert done["request_counts"] == {"total": 60, "completed": 60, "failed": 0}


def test_a_sigterm_during_a_batch_hands_it_back_and_the_next_start_finishes_it(spare: ManagedServer) -> None:
    server = spare.up()
    with httpx.Client(base_url=server.base_url, timeout=120) as client:
        batch_id = create_batch(client, batch_file(client, 40, 12))
        eventually(
            lambda: client.get(f"/v1/batches/{batch_id}").json()["request_counts"]["completed"] >= 5, 120, "lines"
        )
    stopped = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0, server.log()[-3000:]
    assert time.monotonic() - stopped < 45, "the batch runner let the shutdown through"
    restarted = time.monotonic()
    with httpx.Client(base_url=spare.up().base_url, timeout=120) as client:
        done = eventually(
            lambda: (b := client.get(f"/v1/batches/{batch_id}").json())["status"] == "completed" and b, 300, "resume"
        )
        output = client.get(f"/v1/files/{done['output_file_id']}/content").text.splitlines()
    assert Counter(json.loads(line)["custom_id"] for line in output) == Counter({f"c{i}": 1 for i in range(40)})
    print(f"restart to batch completed: {time.monotonic() - restarted:.1f} s (handed back: no lease to wait out)")
