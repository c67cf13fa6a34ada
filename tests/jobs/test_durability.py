"""50 jobs, the server killed with SIGKILL mid-way, a restart: all succeed, each result reaches the caller once."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from monolith.bench.peers import kill_tree
from tests.conftest import discard_server, start_server, stop_server, wait_ready
from tests.helpers import Receiver, assert_each_result_delivered_once, delivered, eventually

JOBS = 50


def statuses(base_url: str) -> dict[str, str]:
    data = httpx.get(f"{base_url}/v1/jobs", params={"limit": 1000}, timeout=30).json()["data"]
    return {j["id"]: j["status"] for j in data}


@pytest.mark.slow
def test_jobs_survive_kill_9_and_run_once_to_completion(tmp_path: Path, model_dir: Path) -> None:
    receiver = Receiver()
    data_dir = tmp_path / "replica"
    # Fast polling so that the kill lands while jobs are running.
    env = {"MONOLITH_STORE__POLL_INTERVAL_S": "0.05", "MONOLITH_RAG__EXPAND": "false"}
    first = start_server(data_dir, model_dir, env)
    try:
        wait_ready(first)
        ids = []
        for i in range(JOBS):
            body = {"model": "twin", "messages": [{"role": "user", "content": f"Count to {i}"}], "max_tokens": 8}
            response = httpx.post(
                f"{first.base_url}/v1/async/chat/completions", params={"callback_url": receiver.url}, json=body
            )
            assert response.status_code == 202
            ids.append(response.json()["id"])
        eventually(lambda: list(statuses(first.base_url).values()).count("succeeded") >= 5, 300, "five jobs done")
        before_kill = statuses(first.base_url)
        kept = {
            i: httpx.get(f"{first.base_url}/v1/jobs/{i}").json()["result"]
            for i, s in before_kill.items()
            if s == "succeeded"
        }
        kill_tree(first.proc)  # the whole tree, as when a node or container dies
    finally:
        stop_server(first)
    assert 5 <= list(before_kill.values()).count("succeeded") < JOBS, before_kill
    assert "running" in before_kill.values()

    second = start_server(data_dir, model_dir, env)
    try:
        wait_ready(second)

        def all_succeeded() -> dict[str, str] | None:
            now = statuses(second.base_url)
            return now if all(now.get(i) == "succeeded" for i in ids) else None

        after = eventually(all_succeeded, 600, "every job to succeed after the restart", 0.5)
        assert [after.get(i) for i in ids] == ["succeeded"] * JOBS
        # a job that had succeeded before the kill kept its result: it was not run again
        for job_id, result in kept.items():
            assert httpx.get(f"{second.base_url}/v1/jobs/{job_id}").json()["result"] == result
        eventually(lambda: len(delivered(receiver)) >= JOBS, 60, "a callback for every job", 0.2)
    finally:
        discard_server(second)
        receiver.close()
    assert_each_result_delivered_once(receiver, ids)
