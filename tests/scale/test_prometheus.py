"""The prometheus-adapter rule's PromQL, evaluated by real Prometheus over real scrapes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from monolith.scale.prometheus import Prometheus, adapter_query
from tests.conftest import free_port


@pytest.fixture
def exporters() -> Iterator[Callable[[float], str]]:
    """Pods' /metrics, each with its own queue depth (the replicas' own are scraped in test_demo); stopped after."""
    servers = []

    def exporter(queue_depth: float) -> str:
        registry = CollectorRegistry()
        Gauge("monolith_queue_depth", "queue", registry=registry).set(queue_depth)
        port = free_port()
        server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield exporter
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_adapter_query_returns_one_value_per_selected_pod(
    tmp_path: Path, exporters: Callable[[float], str]
) -> None:
    prometheus = Prometheus(tmp_path, free_port(), scrape_interval_s=0.5)
    prometheus.start()
    try:
        prometheus.set_targets({"monolith-a": exporters(2), "monolith-b": exporters(10), "other": exporters(99)})
        query = adapter_query("demo", ["monolith-a", "monolith-b"])
        assert query == (
            'sum(avg_over_time(monolith_queue_depth{namespace="demo",pod=~"monolith-a|monolith-b"}[1m])) by (pod)'
        )
        deadline = time.monotonic() + 30
        values: dict[str, float] = {}
        while time.monotonic() < deadline and len(values) < 2:
            values = prometheus.query(query)
            time.sleep(0.5)
        assert values == {"monolith-a": 2.0, "monolith-b": 10.0}
    finally:
        prometheus.stop()
