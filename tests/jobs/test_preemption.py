"""Real-time first on the real engine, through the background budget (scheduling.BackgroundBudget): on a
two-slot engine full of background work, a real-time request preempts the youngest background generation and
is answered while the background is still running; a preempted job or batch line pauses, goes on from its tokens
and is answered once, in full; background work that waited past scheduling.max_background_wait_s is served under
a real-time load that never lets up. Order and outcomes, not times (performance: `make bench`, mixed). Under
scheduling.adaptive false the first two fail: the real-time request waits for a background sequence to end."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from monolith.bench.otlp import OtlpReceiver, Span
from tests.api.test_health import gauge, metric_samples
from tests.api.test_jobs import wait_for_job
from tests.conftest import ManagedServer, managed_server
from tests.helpers import Receiver, eventually
from tests.twins import twins_env

pytestmark = pytest.mark.slow

SLOTS = 2
OVERDUE_AFTER_S = 12.0


@pytest.fixture(scope="module")
def two_slots(
    tmp_path_factory: pytest.TempPathFactory,
    model_dir: Path,
    twin_adapters: dict[str, Path],
    otlp_receiver: OtlpReceiver,
) -> Iterator[ManagedServer]:
    env = {
        **twins_env(twin_adapters),  # a preempted twin's generation must resume with its adapter
        **otlp_receiver.env(),  # a preempted job's trace shows its pause and its resumption
        "MONOLITH_ENGINE__MAX_NUM_SEQS": str(SLOTS),
        # Quiet soon after the last real-time request: the background fills the engine between the tests' steps.
        "MONOLITH_SCHEDULING__REALTIME_QUIET_S": "1",
        "MONOLITH_SCHEDULING__MAX_BACKGROUND_WAIT_S": str(OVERDUE_AFTER_S),
    }
    with managed_server(tmp_path_factory.mktemp("two-slots"), model_dir, env) as managed:
        yield managed


def lane(http: httpx.Client, name: str, which: str) -> float:
    samples = metric_samples(http.get("/metrics").text).get(name, [])
    return next((s.value for s in samples if s.labels.get("lane") == which), 0.0)


def chat(tokens: int, stream: bool = False, model: str = "twin") -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": tokens,
        "ignore_eos": True,
        "temperature": 0,
        "stream": stream,
    }


def quiet(http: httpx.Client) -> None:
    """Nothing running, and no real-time request for longer than realtime_quiet_s: the background may fill it."""
    eventually(lambda: gauge(http, "monolith_requests_running") == 0, 120, "the engine to be idle")
    time.sleep(1.5)


def test_a_real_time_request_preempts_a_job_which_then_completes_once_in_full(
    two_slots: ManagedServer, otlp_receiver: OtlpReceiver
) -> None:
    """The preempted job pauses and goes on from its tokens (monolith.resume): the engine makes each of its
    tokens once, where starting over made the ones before the preemption twice."""
    receiver = Receiver()
    try:
        with httpx.Client(base_url=two_slots.up().base_url, timeout=300) as http:
            quiet(http)
            generated = gauge(http, "monolith_generated_tokens_total")
            hook = {"callback_url": receiver.url}  # counts each job's outcomes
            ids = [
                http.post("/v1/async/chat/completions", params=hook, json=chat(150)).json()["id"] for _ in range(SLOTS)
            ]
            eventually(lambda: lane(http, "monolith_lane_running", "async") >= SLOTS, 60, "the jobs to fill the engine")
            before = lane(http, "monolith_background_preempted_total", "async")

            realtime = http.post("/v1/chat/completions", json=chat(4))
            statuses = [http.get(f"/v1/jobs/{i}").json()["status"] for i in ids]
            assert realtime.status_code == 200 and realtime.json()["usage"]["completion_tokens"] == 4
            assert "succeeded" not in statuses, f"answered while the jobs still ran, not after one: {statuses}"
            assert lane(http, "monolith_background_preempted_total", "async") == before + 1, "one slot was needed"

            jobs = [wait_for_job(http, i) for i in ids]
            eventually(lambda: len(receiver.received) >= SLOTS, 60, "the callbacks")
            time.sleep(2)  # a second run to a result would call back again
            made = gauge(http, "monolith_generated_tokens_total") - generated
    finally:
        receiver.close()
    for job in jobs:
        assert job["status"] == "succeeded", job
        assert job["result"]["usage"]["completion_tokens"] == 150 and job["result"]["choices"][0]["finish_reason"]
    delivered = Counter(json.loads(body)["id"] for _, body in receiver.received)
    assert delivered == Counter(ids), "each job reached its result once"
    assert made == SLOTS * 150 + 4, "no token was made twice"

    # Each job's run is a trace; the preempted one shows its pause and resumption, and an engine generation for
    # each of its two attempts (the first ended by the pause).
    def runs() -> list[Span] | None:
        found = [s for s in otlp_receiver.spans if s.attributes.get("monolith.job.id") in ids]
        return found if len(found) == SLOTS else None

    paused = [run for run in eventually(runs, 30, "the jobs' run spans") if "preempted" in run.events]
    assert len(paused) == 1 and paused[0].events == ["preempted", "resumed"], paused
    attempts = [s for s in otlp_receiver.trace(paused[0].trace_id) if s.name.startswith("text_completion")]
    assert sorted(s.attributes["gen_ai.response.finish_reasons"][0] for s in attempts) == ["abort", "length"]
    assert sum(s.attributes["gen_ai.usage.output_tokens"] for s in attempts) >= 150


def test_a_preempted_twin_job_resumes_with_its_adapter(two_slots: ManagedServer) -> None:
    """The paused job goes on from its tokens with the twin's weights: the same text as uninterrupted."""
    with httpx.Client(base_url=two_slots.up().base_url, timeout=300) as http:
        quiet(http)
        alone = wait_for_job(http, http.post("/v1/async/chat/completions", json=chat(120, model="ada")).json()["id"])
        base = http.post("/v1/chat/completions", json=chat(120)).json()["choices"][0]["message"]["content"]
        quiet(http)
        ids = [http.post("/v1/async/chat/completions", json=chat(120, model="ada")).json()["id"] for _ in range(SLOTS)]
        eventually(lambda: lane(http, "monolith_lane_running", "async") >= SLOTS, 60, "the jobs to fill the engine")
        before = lane(http, "monolith_background_preempted_total", "async")
        assert http.post("/v1/chat/completions", json=chat(4)).status_code == 200
        assert lane(http, "monolith_background_preempted_total", "async") == before + 1, "a twin job was paused"
        jobs = [wait_for_job(http, i) for i in ids]
    text = alone["result"]["choices"][0]["message"]["content"]
    assert text != base, "the twin's weights answer, not the base's"
    assert [job["result"]["choices"][0]["message"]["content"] for job in jobs] == [text] * SLOTS


def test_a_preempted_batch_line_is_answered_once(two_slots: ManagedServer) -> None:
    with httpx.Client(base_url=two_slots.up().base_url, timeout=300) as http:
        quiet(http)
        generated = gauge(http, "monolith_generated_tokens_total")
        lines = [
            {"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions", "body": chat(100)} for i in range(4)
        ]
        content = "\n".join(json.dumps(line) for line in lines).encode()
        upload = http.post("/v1/files", files={"file": ("in.jsonl", content)}, data={"purpose": "batch"})
        body = {"input_file_id": upload.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        batch_id = http.post("/v1/batches", json=body).json()["id"]
        eventually(lambda: lane(http, "monolith_lane_running", "batch") >= SLOTS, 60, "lines to fill the engine")
        before = lane(http, "monolith_background_preempted_total", "batch")

        realtime = http.post("/v1/chat/completions", json=chat(4))
        counts = http.get(f"/v1/batches/{batch_id}").json()["request_counts"]
        assert realtime.status_code == 200
        assert counts["completed"] == 0, "answered before any line finished"
        assert lane(http, "monolith_background_preempted_total", "batch") == before + 1

        done = eventually(
            lambda: (b := http.get(f"/v1/batches/{batch_id}").json())["status"] == "completed" and b, 300, "the batch"
        )
        content = http.get(f"/v1/files/{done['output_file_id']}/content").text
        made = gauge(http, "monolith_generated_tokens_total") - generated
    output = [json.loads(line) for line in content.splitlines()]
    assert Counter(line["custom_id"] for line in output) == Counter(f"c{i}" for i in range(4))
    assert {line["response"]["body"]["usage"]["completion_tokens"] for line in output} == {100}
    assert done["request_counts"] == {"total": 4, "completed": 4, "failed": 0}
    assert made == 4 * 100 + 4, "the preempted line went on from its tokens: none was made twice"


def test_an_old_job_is_served_under_real_time_load_that_never_lets_up(two_slots: ManagedServer) -> None:
    base_url = two_slots.up().base_url
    stop = threading.Event()
    answered: list[float] = []

    def realtime_forever() -> None:
        with httpx.Client(base_url=base_url, timeout=300) as client:
            while not stop.is_set():
                assert client.post("/v1/chat/completions", json=chat(24)).status_code == 200
                answered.append(time.monotonic())

    # Twice the engine's slots, back to back: real-time requests are always waiting, so no job may start
    # until it is overdue.
    load = [threading.Thread(target=realtime_forever) for _ in range(2 * SLOTS)]
    with httpx.Client(base_url=base_url, timeout=300) as http:
        quiet(http)
        for thread in load:
            thread.start()
        try:
            eventually(lambda: gauge(http, "monolith_queue_depth") >= 1, 60, "real-time requests waiting")
            job_id = http.post("/v1/async/chat/completions", json=chat(8)).json()["id"]
            job = wait_for_job(http, job_id, timeout_s=120)
            waiting_still = gauge(http, "monolith_queue_depth")
            served_during = sum(1 for t in answered if t > time.monotonic() - 5)
        finally:
            stop.set()
            for thread in load:
                thread.join()
    assert job["status"] == "succeeded" and job["result"]["usage"]["completion_tokens"] == 8
    waited = job["started_at"] - job["created_at"]
    assert waited >= OVERDUE_AFTER_S - 0.5, f"started after {waited:.1f} s: before it was overdue"
    assert waiting_still >= 1 and served_during >= 2, "the real-time load went on while the job ran"
