"""A real Prometheus process scraping replicas on loopback, and the adapter rule's query against it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[3]
ADAPTER_RULES = ROOT / "configs" / "k8s" / "prometheus-adapter-rules.yaml"
METRIC = "monolith_queue_depth"


def find_binary() -> Path:
    """`make prometheus` puts the Debian package's binary in the venv; else one on PATH."""
    for candidate in (
        os.environ.get("MONOLITH_PROMETHEUS"),
        str(ROOT / ".venv" / "prometheus" / "usr" / "bin" / "prometheus"),
        shutil.which("prometheus"),
    ):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise FileNotFoundError("no Prometheus binary: run `make prometheus`")


def adapter_query(namespace: str, pods: list[str], rules: Path = ADAPTER_RULES) -> str:
    """The rule's metricsQuery, rendered as prometheus-adapter renders it for an HPA on these pods."""
    config = yaml.safe_load(yaml.safe_load(rules.read_text())["data"]["config.yaml"])
    rule = next(r for r in config["rules"] if r["name"]["as"] == METRIC)
    matchers = f'namespace="{namespace}",pod=~"{"|".join(pods)}"'
    return (
        rule["metricsQuery"]
        .replace("<<.Series>>", METRIC)
        .replace("<<.LabelMatchers>>", matchers)
        .replace("<<.GroupBy>>", "pod")
    )


class Prometheus:
    """Scrapes the targets in a file_sd file, each labelled with namespace and pod like Kubernetes SD."""

    def __init__(self, workdir: Path, port: int, scrape_interval_s: float = 1.0, namespace: str = "demo") -> None:
        self.workdir = workdir
        self.port = port
        self.namespace = namespace
        self.url = f"http://127.0.0.1:{port}"
        self.targets_file = workdir / "targets.json"
        self.scrape_interval_s = scrape_interval_s
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.set_targets({})
        interval = f"{int(self.scrape_interval_s * 1000)}ms"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [{"job_name": "monolith", "file_sd_configs": [{"files": [str(self.targets_file)]}]}],
        }
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = (self.workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                str(find_binary()),
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(self.workdir / 'prometheus.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("prometheus not ready")

    def set_targets(self, pods: dict[str, str]) -> None:
        """pod name -> host:port; written atomically, picked up by file_sd without a reload."""
        labels = {"namespace": self.namespace}
        groups = [{"targets": [addr], "labels": {**labels, "pod": pod}} for pod, addr in pods.items()]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_file)

    def query(self, promql: str) -> dict[str, float]:
        """An instant vector, keyed by pod."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        response.raise_for_status()
        body = response.json()
        if body["status"] != "success":
            raise RuntimeError(f"query failed: {body}")
        return {r["metric"].get("pod", ""): float(r["value"][1]) for r in body["data"]["result"]}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
