"""SIGTERM with async jobs queued and running: readiness turns 503 and no job is claimed; the running ones get
shutdown.drain_s, then go back to the queue (their run not counted) for another replica or the next start;
the process exits 0; after a restart every job succeeds. None is lost, none failed."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from tests.api.test_health import metric_samples
from tests.conftest import discard_server, start_server, stop_server, wait_ready
from tests.helpers import eventually
from tests.helpers import job_statuses as statuses

DRAIN_S = 5
JOBS = 4


@pytest.mark.slow
def test_sigterm_hands_running_jobs_back_after_the_drain_and_keeps_the_queued_ones(
    tmp_path: Path, model_dir: Path
) -> None:
    data_dir = tmp_path / "replica"
    env = {
        "MONOLITH_SHUTDOWN__DRAIN_S": str(DRAIN_S),
        "MONOLITH_ENGINE__MAX_NUM_SEQS": "2",  # two jobs run, two wait
        "MONOLITH_STORE__POLL_INTERVAL_S": "0.05",
    }
    first = start_server(data_dir, model_dir, env)
    try:
        wait_ready(first)
        body = {"model": "twin", "prompt": "A long story:", "max_tokens": 200, "ignore_eos": True}
        ids = [httpx.post(f"{first.base_url}/v1/async/completions", json=body).json()["id"] for _ in range(JOBS)]
        eventually(lambda: statuses(first.base_url, ids).count("running") >= 2, 60, "two jobs running", 0.05)
        assert statuses(first.base_url, ids).count("queued") == 2
        first.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.5)
        ready = httpx.get(f"{first.base_url}/health/ready", timeout=10)
        running = metric_samples(httpx.get(f"{first.base_url}/metrics").text)["monolith_async_running"][0].value
        exit_code = first.proc.wait(timeout=DRAIN_S + 60)
        exited_after = time.monotonic() - signalled
    finally:
        stop_server(first)
    assert ready.status_code == 503 and ready.json()["status"] == "draining"
    assert running == 2  # the drain: the two running jobs go on, and nothing new is claimed
    assert exit_code == 0, first.log()[-3000:]
    assert DRAIN_S - 1 <= exited_after < DRAIN_S + 30, exited_after  # waited for the drain, not forever
    with sqlite3.connect(data_dir / "jobs.sqlite3") as db:
        stored = dict(db.execute("SELECT id, status || ':' || runs FROM jobs").fetchall())
    # Every job is queued again, and the interrupted runs are not counted against store.max_runs.
    assert [stored[i] for i in ids] == ["queued:0"] * JOBS, stored

    second = start_server(data_dir, model_dir, env)
    try:
        wait_ready(second)

        def all_succeeded() -> bool:
            now = statuses(second.base_url, ids)
            assert "failed" not in now, now
            return now == ["succeeded"] * JOBS

        eventually(all_succeeded, 300, "every job to succeed after the next start", 0.5)
    finally:
        discard_server(second)
