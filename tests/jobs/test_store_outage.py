"""PostgreSQL stopped for 20 s under a server running async jobs and real-time traffic, then back on the same address
(a restart, or a failover that keeps it): real-time answers 200 throughout; a submit answers 503 with Retry-After
and the store named, in bounded time; readiness stays 200 and says the store is down; after the restart every job
succeeds, each result delivered once, and a new submit is accepted; the outage is logged once, not per call."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from monolith.bench.postgres import PostgresServer
from tests.api.test_health import metric_samples
from tests.conftest import discard_server, start_server, wait_ready
from tests.helpers import Receiver, assert_each_result_delivered_once, delivered, eventually

JOBS = 6
OUTAGE_S = 20


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own: it is stopped and started again, which the session's must not be."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


def submit(base_url: str, i: int, callback: str) -> httpx.Response:
    body = {"model": "twin", "prompt": f"Item {i}:", "max_tokens": 48, "ignore_eos": True}
    return httpx.post(f"{base_url}/v1/async/completions", params={"callback_url": callback}, json=body, timeout=60)


@pytest.mark.slow
def test_a_store_outage_leaves_real_time_alone_and_loses_no_job(
    tmp_path: Path, model_dir: Path, own_postgres: PostgresServer
) -> None:
    receiver = Receiver()
    env = {
        "MONOLITH_STORE__DATABASE": own_postgres.create_database("outage"),
        "MONOLITH_STORE__TIMEOUT_S": "2",
        "MONOLITH_STORE__RETRY_AFTER_S": "1",
        "MONOLITH_STORE__POLL_INTERVAL_S": "0.1",
    }
    server = start_server(tmp_path / "replica", model_dir, env)
    realtime: list[int | str] = []
    stop_traffic = threading.Event()

    def real_time_traffic() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            while not stop_traffic.is_set():
                try:
                    body = {"model": "twin", "prompt": "Hi", "max_tokens": 4}
                    realtime.append(client.post("/v1/completions", json=body).status_code)
                except httpx.HTTPError as exc:
                    realtime.append(type(exc).__name__)
                time.sleep(0.2)

    traffic = threading.Thread(target=real_time_traffic, daemon=True)
    try:
        wait_ready(server)
        ids = []
        for i in range(JOBS):
            response = submit(server.base_url, i, receiver.url)
            assert response.status_code == 202
            ids.append(response.json()["id"])
        traffic.start()
        time.sleep(1)
        log_before = len(server.log())
        own_postgres.halt()
        halted_at = time.monotonic()

        refused = []  # (status, seconds it took, Retry-After, error body) for submits during the outage
        while time.monotonic() - halted_at < OUTAGE_S:
            started = time.monotonic()
            response = submit(server.base_url, 100 + len(refused), receiver.url)
            refused.append(
                (
                    response.status_code,
                    time.monotonic() - started,
                    response.headers.get("retry-after"),
                    response.json().get("error"),
                )
            )
            ready = httpx.get(f"{server.base_url}/health/ready", timeout=10)
            time.sleep(1)
        store_up = metric_samples(httpx.get(f"{server.base_url}/metrics").text)["monolith_store_up"][0].value
        outage_log = server.log()[log_before:]
        own_postgres.resume()
        resumed_at = time.monotonic()

        deadline = resumed_at + 60
        while (late := submit(server.base_url, 999, receiver.url)).status_code != 202:
            assert time.monotonic() < deadline, f"no submit accepted a minute after the store came back: {late.text}"
            time.sleep(1)
        ids.append(late.json()["id"])

        def all_finished() -> list[str] | None:
            jobs = [httpx.get(f"{server.base_url}/v1/jobs/{i}", timeout=30).json()["status"] for i in ids]
            return jobs if all(s in ("succeeded", "failed", "cancelled") for s in jobs) else None

        jobs = eventually(all_finished, 600, "every job to finish", 0.5)
        eventually(lambda: len(delivered(receiver)) >= len(ids), 60, "a callback for every job", 0.2)
    finally:
        stop_traffic.set()
        if traffic.is_alive():
            traffic.join(timeout=60)  # its last request answered before the server is killed
        discard_server(server)
        receiver.close()

    print(f"submits during the outage: {[(s, round(t, 2)) for s, t, _, _ in refused]}")
    assert realtime and set(realtime) == {200}, [r for r in realtime if r != 200][:5]
    assert refused and all(status == 503 for status, _, _, _ in refused), refused
    assert max(seconds for _, seconds, _, _ in refused) < 15  # bounded: the pool's and the connection's timeouts
    assert all(retry and int(retry) >= 1 for _, _, retry, _ in refused)
    assert all(error["code"] == "store_unavailable" and "job store" in error["message"] for *_, error in refused)
    assert ready.status_code == 200 and ready.json()["store"] == "down"
    assert store_up == 0
    assert outage_log.count("the job store is unreachable (") == 1, "the outage is said once"
    assert "Traceback" not in outage_log
    assert jobs == ["succeeded"] * len(ids), jobs
    assert_each_result_delivered_once(receiver, ids)
