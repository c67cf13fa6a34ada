"""The engine core killed under a server running async jobs and real-time requests: readiness 503 at once,
in-flight requests end with a 503, the process exits non-zero within seconds, and after a restart on the same
store every job succeeds (an engine fault is never the job's: none is marked failed)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from monolith.api.server import FATAL_EXIT_CODE
from tests.conftest import ServerProcess, discard_server, start_server, stop_server, wait_ready
from tests.helpers import eventually
from tests.helpers import job_statuses as statuses

JOBS = 6
FINISHED = ("succeeded", "failed", "cancelled")


def engine_core(server: ServerProcess) -> psutil.Process:
    """vLLM's engine core: the child process that holds the model (its title says EngineCore)."""
    for child in psutil.Process(server.proc.pid).children(recursive=True):
        with_title = " ".join([child.name(), *child.cmdline()])
        if "EngineCore" in with_title:
            return child
    raise AssertionError("no EngineCore process under the server")


@pytest.mark.slow
def test_engine_death_exits_for_a_restart_and_loses_no_job(tmp_path: Path, model_dir: Path) -> None:
    data_dir = tmp_path / "replica"
    env = {"MONOLITH_STORE__POLL_INTERVAL_S": "0.05", "MONOLITH_STORE__RETRY_AFTER_S": "1"}
    first = start_server(data_dir, model_dir, env)
    streamed: list[bytes] = []
    try:
        wait_ready(first)
        ids = []
        for i in range(JOBS):
            body = {"model": "twin", "prompt": f"Story {i}:", "max_tokens": 160, "ignore_eos": True}
            response = httpx.post(f"{first.base_url}/v1/async/completions", json=body)
            assert response.status_code == 202
            ids.append(response.json()["id"])
        eventually(lambda: "running" in statuses(first.base_url, ids), 120, "a job to start")

        def stream_one() -> None:  # a real-time stream in flight when the engine dies
            body = {"model": "twin", "prompt": "Once", "max_tokens": 1000, "ignore_eos": True, "stream": True}
            with httpx.stream("POST", f"{first.base_url}/v1/completions", json=body, timeout=120) as response:
                streamed.extend(response.iter_bytes())

        streaming = threading.Thread(target=stream_one, daemon=True)
        streaming.start()
        time.sleep(2)
        os.kill(engine_core(first).pid, signal.SIGKILL)  # as the OOM killer would
        killed_at = time.monotonic()
        ready = None
        while time.monotonic() - killed_at < 5:
            try:
                ready = httpx.get(f"{first.base_url}/health/ready", timeout=2)
            except httpx.TransportError:
                break  # already gone
            if ready.status_code == 503:
                break
            time.sleep(0.05)
        assert ready is None or ready.status_code == 503, "readiness still 200 five seconds after the engine died"
        readiness_s = time.monotonic() - killed_at
        exit_code = first.proc.wait(timeout=60)
        exit_s = time.monotonic() - killed_at
        streaming.join(timeout=30)
        print(f"readiness 503 after {readiness_s:.2f} s, exit {exit_code} after {exit_s:.1f} s")
    finally:
        stop_server(first)
    assert exit_code == FATAL_EXIT_CODE, first.log()[-3000:]
    text = b"".join(streamed).decode()
    assert '"dependency_unavailable"' in text or '"not_ready"' in text, text[-500:]  # an error frame, not a hang

    second = start_server(data_dir, model_dir, env)
    try:
        wait_ready(second)

        def all_finished() -> list[str] | None:
            now = statuses(second.base_url, ids)
            return now if all(s in FINISHED for s in now) else None

        now = eventually(all_finished, 600, "every job to finish after the restart", 0.5)
        assert now == ["succeeded"] * JOBS, now
    finally:
        discard_server(second)
