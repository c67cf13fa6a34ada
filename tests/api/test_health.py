"""Readiness tells the truth during load; /metrics parses and carries the promised names."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from monolith.api.app import create_app
from monolith.config import Settings, load_settings
from monolith.runtime import ENGINE_WATCH_S, Phase, Runtime
from tests.conftest import CPU_CONFIG, ServerProcess, start_server, stop_server
from tests.scripted import ScriptedEngine, scripted_loader

METRICS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "metrics.md"


def documented_metrics() -> set[str]:
    """The names in the first column of the metrics reference (generated from the registry)."""
    names: set[str] = set()
    for row in METRICS_PAGE.read_text().splitlines():
        if row.startswith("| `"):
            names |= {re.sub(r"\{.*", "", n) for n in re.findall(r"`([^`]+)`", row.split("|")[1])}
    return names


def metric_samples(text: str) -> dict[str, list]:
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def gauge(http: httpx.Client, name: str) -> float:
    return metric_samples(http.get("/metrics").text)[name][0].value


def wait_idle(http: httpx.Client, timeout_s: float = 120) -> None:
    """Before a test that reads the shared server's gauges: whatever an earlier test left running is done."""
    names = ("monolith_requests_running", "monolith_queue_depth", "monolith_async_running")
    deadline = time.monotonic() + timeout_s
    while any(gauge(http, name) for name in names):
        if time.monotonic() > deadline:
            raise AssertionError(f"the server is still busy after {timeout_s} s: {[gauge(http, n) for n in names]}")
        time.sleep(0.1)


class ClosableStub:
    closed = False

    async def aclose(self) -> None:
        self.closed = True


async def test_readiness_is_503_while_loading_and_200_after(settings: Settings) -> None:
    release = asyncio.Event()

    async def slow_loader(state: Runtime) -> None:  # stands in for the 30 s model load
        await release.wait()
        state.phase, state.detail = Phase.READY, "ready"
        state.services = ClosableStub()  # type: ignore[assignment]

    async with AsyncTestClient(app=create_app(settings, loader=slow_loader)) as client:
        assert (await client.get("/health/live")).status_code == 200
        loading = await client.get("/health/ready")
        assert loading.status_code == 503
        assert loading.headers["retry-after"]
        assert loading.json()["status"] == "loading"
        blocked = await client.post("/rag", json={"query": "hi"})
        assert blocked.status_code == 503
        assert blocked.json()["error"]["type"] == "not_ready"
        release.set()
        await asyncio.sleep(0.05)
        assert (await client.get("/health/ready")).status_code == 200


async def test_failed_start_stays_alive_and_says_why(settings: Settings) -> None:
    async def broken_loader(state: Runtime) -> None:
        state.phase, state.detail = Phase.FAILED, "start-up failed: boom"

    async with AsyncTestClient(app=create_app(settings, loader=broken_loader)) as client:
        assert (await client.get("/health/live")).status_code == 200
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        assert "boom" in ready.json()["detail"]


async def test_a_dead_engine_turns_readiness_liveness_and_new_work_503_at_once(settings: Settings) -> None:
    """The watcher reads the engine's liveness every ENGINE_WATCH_S; the server's exit is tests/jobs/
    test_engine_death.py (a real engine core killed)."""
    engine = ScriptedEngine()
    exits: list[bool] = []
    app = create_app(settings, loader=scripted_loader(engine))
    app.state.runtime.on_fatal = lambda: exits.append(True)
    async with AsyncTestClient(app=app) as client:
        await asyncio.sleep(0.05)
        assert (await client.get("/health/ready")).status_code == 200
        engine.dead = True
        await asyncio.sleep(ENGINE_WATCH_S + 0.2)
        ready = await client.get("/health/ready")
        live = await client.get("/health/live")
        work = await client.post("/v1/completions", json={"model": "twin", "prompt": "hi", "max_tokens": 2})
    assert ready.status_code == 503 and "engine stopped" in ready.json()["detail"]
    assert live.status_code == 503 and live.json()["status"] == "restart"
    assert work.status_code == 503 and work.json()["error"]["type"] == "not_ready"
    assert exits == [True], "the server was told to exit once"


def test_real_server_reports_ready_with_its_start_up_timings(server: ServerProcess, http: httpx.Client) -> None:
    body = http.get("/health/ready").json()
    assert body["status"] == "ready"
    assert {"engine_load", "warmup", "ingest", "time_to_ready"} <= set(body["timings_s"])


def test_metrics_parse_and_carry_the_promised_names(http: httpx.Client) -> None:
    assert http.post("/rag", json={"query": "What is a KV cache?", "max_tokens": 8}).status_code == 200
    assert http.post("/rag", json={"query": ""}).status_code == 400
    response = http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    samples = metric_samples(response.text)
    for name in (
        "monolith_requests_total",
        "monolith_request_duration_seconds_bucket",
        "monolith_time_to_first_token_seconds_bucket",
        "monolith_generated_tokens_total",
        "monolith_queue_depth",
        "monolith_requests_running",
        "monolith_engine_kv_cache_usage",
        "monolith_rag_step_seconds_bucket",
        "monolith_ready",
    ):
        assert name in samples, name
    by_route = {(s.labels["route"], s.labels["status"]): s.value for s in samples["monolith_requests_total"]}
    assert by_route[("/rag", "200")] >= 1
    assert by_route[("/rag", "400")] >= 1
    assert samples["monolith_generated_tokens_total"][0].value > 0
    assert samples["monolith_ready"][0].value == 1
    steps = {s.labels["step"] for s in samples["monolith_rag_step_seconds_count"]}
    assert {"embed", "search"} <= steps
    assert samples["monolith_prompt_tokens_total"][0].value > 0


def test_the_prefix_cache_counters_count_a_repeated_prompts_blocks_as_hits(http: httpx.Client) -> None:
    """The same prompt twice: the second finds the first's whole KV-cache blocks (engine.block_size tokens each)."""
    prompt = f"{uuid.uuid4().hex} " + " ".join(f"word{i}" for i in range(60))  # its own, ~200 tokens
    length = http.post("/tokenize", json={"model": "twin", "prompt": prompt}).json()["count"]
    names = ("monolith_engine_prefix_cache_queries_total", "monolith_engine_prefix_cache_hits_total")
    wait_idle(http)  # nothing else looks up the cache meanwhile
    before = [gauge(http, name) for name in names]
    for _ in range(2):
        body = {"model": "twin", "prompt": prompt, "max_tokens": 1}
        assert http.post("/v1/completions", json=body).status_code == 200
    queries, hits = (gauge(http, name) - was for name, was in zip(names, before, strict=True))
    block = load_settings(CPU_CONFIG).engine.block_size or 128  # the session's server runs cpu.yaml
    assert queries >= 2 * length
    assert hits >= length - block - 1  # all but the last, partial block (and the last token, always computed)
    assert hits <= length


def test_every_documented_metric_is_exported_and_none_is_missing_from_the_reference(http: httpx.Client) -> None:
    assert http.post("/rag", json={"query": "What is a KV cache?", "max_tokens": 4}).status_code == 200
    samples = metric_samples(http.get("/metrics").text)
    documented = documented_metrics()
    assert len(documented) >= 14, documented
    for name in {n for n in documented if not n.startswith("monolith_twin_")}:  # twins' series: test_twins.py
        assert {name, f"{name}_bucket"} & set(samples), f"the reference lists {name}; /metrics lacks it"
    families = text_string_to_metric_families(http.get("/metrics").text)
    exported = {
        f.name + ("_total" if f.type == "counter" else "")
        for f in families
        if f.name.startswith("monolith_") and not f.name.endswith("_created")  # prometheus_client's timestamps
    }
    assert exported <= documented, f"exported but not in the reference: {exported - documented}"


@pytest.mark.slow
def test_a_failed_start_says_which_step_failed_but_not_the_exception_text(tmp_path: Path, model_dir: Path) -> None:
    missing = tmp_path / "secret-customer-dir" / "model"
    env = {"MONOLITH_ENGINE__MODEL": str(missing), "MONOLITH_ENGINE__PREPARE_FROM": "null"}
    server = start_server(tmp_path / "data", model_dir, env)
    try:
        deadline = time.monotonic() + 300
        body: dict = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                body = httpx.get(f"{server.base_url}/health/ready", timeout=5).json()
                if body.get("status") == "failed":
                    break
            time.sleep(0.5)
        assert body.get("status") == "failed", body
        assert "start-up failed during" in body["detail"] and "secret-customer-dir" not in json.dumps(body)
        assert "secret-customer-dir" in server.log(), "the log keeps the reason"
    finally:
        stop_server(server)
