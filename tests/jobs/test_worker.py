"""The async job runner and the batch lines it shares the background budget with, behind the real app and a real
uvicorn on loopback with a scripted engine (the real engine's side: test_preemption.py, test_spare_capacity.py)."""

from __future__ import annotations

import json
import time

import httpx

from monolith.config import Settings
from tests.conftest import free_port
from tests.helpers import Receiver, eventually
from tests.scripted import ScriptedEngine, ThreadedServer

SLOTS = 2


def chat(max_tokens: int) -> dict:
    return {"model": "twin", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}


def submit_batch(client: httpx.Client, lines: int, max_tokens: int) -> str:
    """A batch of chat lines (tests/jobs/test_spare_capacity.py's helpers make /v1/completions ones)."""
    line = {"method": "POST", "url": "/v1/chat/completions", "body": chat(max_tokens)}
    content = "\n".join(json.dumps({"custom_id": f"line-{i}", **line}) for i in range(lines))
    upload = client.post("/v1/files", files={"file": ("lines.jsonl", content.encode())}, data={"purpose": "batch"})
    upload.raise_for_status()
    batch = client.post("/v1/batches", json={"input_file_id": upload.json()["id"], "endpoint": "/v1/chat/completions"})
    batch.raise_for_status()
    return batch.json()["id"]


def test_a_freed_slot_goes_to_a_queued_async_job_before_a_waiting_batch_line(settings: Settings) -> None:
    """The lanes' order (real-time, async, batch) within the background: every slot that frees while async jobs
    are queued goes to one of them, though a dozen batch lines wait for room too. The runner holds the slot before
    its claim awaits the job store; a batch line woken by the same release would otherwise take it meanwhile."""
    engine = ScriptedEngine(capacity=SLOTS, gap_s=0.01)
    small = settings.model_copy(update={"engine": settings.engine.model_copy(update={"max_num_seqs": SLOTS})})
    with ThreadedServer(small, engine, free_port(), jobs=True) as server, httpx.Client(base_url=server.base_url) as c:
        batch_id = submit_batch(c, lines=12, max_tokens=8)
        eventually(lambda: len(engine.request_ids) >= SLOTS, 30, "the batch to hold every slot", interval_s=0.01)
        job_ids = []
        for _ in range(6):
            response = c.post("/v1/async/chat/completions", json=chat(8))
            response.raise_for_status()
            job_ids.append(response.json()["id"])
        eventually(lambda: c.get(f"/v1/batches/{batch_id}").json()["status"] == "completed", 30, "the batch")
        eventually(lambda: all(c.get(f"/v1/jobs/{j}").json()["status"] == "succeeded" for j in job_ids), 30, "the jobs")
    lanes = ["job" if request_id in job_ids else "line" for request_id in engine.request_ids]
    assert lanes.count("job") == 6 and lanes.count("line") == 12, lanes
    first_job = lanes.index("job")
    assert first_job <= SLOTS + 1, lanes  # the next slot after the jobs came (one line may have been on its way)
    assert lanes[first_job : first_job + 6] == ["job"] * 6, lanes


def test_a_job_whose_slot_is_preempted_during_its_claim_goes_back_uncounted_and_runs_once(settings: Settings) -> None:
    """The runner holds a slot before its claim awaits the job store; a real-time arrival may preempt that slot
    while the claim is in flight. The claimed job must then go back to the queue with that run not counted (it
    never started) and run later, once: neither lost nor started beyond the budget."""
    engine = ScriptedEngine(capacity=SLOTS, gap_s=0.01)
    server = ThreadedServer(settings, engine, free_port(), jobs=True)
    with server, httpx.Client(base_url=server.base_url) as c:
        runner = server.state.jobs
        claim = runner.store.claim
        runs_claimed: list[int] = []

        async def claim_then_preempt(limit: int):  # what a real-time arrival during the claim's await does to its slot
            jobs = await claim(limit)
            runs_claimed.extend(job.runs for job in jobs)
            if jobs and len(runs_claimed) == 1:  # the slot the claimed job was to take (held first)
                runner.budget._preempt(next(h for h in runner.budget.holds if h.task is None))
            return jobs

        runner.store.claim = claim_then_preempt
        response = c.post("/v1/async/chat/completions", json=chat(8))
        response.raise_for_status()
        job_id = response.json()["id"]
        eventually(lambda: c.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded", 30, "the job")
        assert len(c.get(f"/v1/jobs/{job_id}").json()["result"]["choices"][0]["message"]["content"].split()) == 8
        assert runner.budget.holds == []
    assert runs_claimed == [1, 1]  # claimed twice, the preempted claim's run handed back
    assert engine.request_ids.count(job_id) == 1  # the preempted claim never reached the engine


def test_a_finished_jobs_callback_goes_out_at_once_not_at_the_next_look_for_work(settings: Settings) -> None:
    """The callback loop also looks every store.poll_interval_s (for callbacks due again after a failed attempt, or
    jobs finished on another replica); a job finished here wakes it. With a look a minute apart, the callback
    still comes in seconds."""
    store = settings.store.model_copy(update={"poll_interval_s": 60.0})
    callbacks = settings.callbacks.model_copy(update={"allow": ["127.0.0.1"]})
    changed = settings.model_copy(update={"store": store, "callbacks": callbacks})
    receiver = Receiver()
    try:
        with (
            ThreadedServer(changed, ScriptedEngine(), free_port(), jobs=True) as s,
            httpx.Client(base_url=s.base_url) as c,
        ):
            time.sleep(1)  # the callback loop's first look is over: it now sleeps until woken or a minute passes
            response = c.post("/v1/async/chat/completions", params={"callback_url": receiver.url}, json=chat(4))
            response.raise_for_status()
            eventually(lambda: receiver.received, 20, "the callback")
    finally:
        receiver.close()
    assert json.loads(receiver.received[0][1])["id"] == response.json()["id"]


def test_jobs_waiting_for_free_slots_are_claimed_in_one_call_to_the_store(settings: Settings) -> None:
    """Slots that free together are filled in one transaction, not one each (a job store write per job took the
    engine's cores on a CPU host); every job still runs once."""
    engine = ScriptedEngine(capacity=4, gap_s=0.01)
    four = settings.model_copy(update={"engine": settings.engine.model_copy(update={"max_num_seqs": 4})})
    with ThreadedServer(four, engine, free_port(), jobs=True) as server, httpx.Client(base_url=server.base_url) as c:
        runner = server.state.jobs
        claim = runner.store.claim
        claimed: list[tuple[int, int]] = []  # (limit, jobs claimed), per call

        async def counted(limit: int):
            jobs = await claim(limit)
            claimed.append((limit, len(jobs)))
            return jobs

        runner.store.claim = counted
        runner.paused = True  # the jobs queue up while the runner claims none
        job_ids = []
        for _ in range(4):
            response = c.post("/v1/async/chat/completions", json=chat(8))
            response.raise_for_status()
            job_ids.append(response.json()["id"])
        runner.paused = False  # its next look (store.poll_interval_s) finds all four and every slot free
        eventually(lambda: all(c.get(f"/v1/jobs/{j}").json()["status"] == "succeeded" for j in job_ids), 30, "the jobs")
    assert claimed[0] == (4, 4), claimed
    assert sorted(engine.request_ids) == sorted(job_ids), "each ran once"
