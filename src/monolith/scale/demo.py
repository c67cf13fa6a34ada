"""`make scale-demo`: real replicas, real Prometheus, the HPA algorithm on the adapter rule's query.

Replicas are `monolith serve` processes on loopback with their own ports and data directories. A
load burst goes through a client-side balancer (the Service) to ready replicas; 429s are retried
after their Retry-After. Every `period_s` the controller reads the adapter query from Prometheus,
applies the HPA algorithm with the manifest's target and behavior, and starts or stops replicas
(a stopped replica leaves the balancer first, like an endpoint removal before preStop and SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import httpx

from monolith.bench.peers import free_port, kill_tree, launch, service_env
from monolith.config import load_settings
from monolith.model_prep import prepare_model
from monolith.scale.hpa import Autoscaler, HpaSpec, Rules, raw_desired
from monolith.scale.prometheus import ROOT, Prometheus, adapter_query

HPA_MANIFEST = ROOT / "configs" / "k8s" / "hpa.yaml"
NAMESPACE = "demo"


@dataclass(frozen=True)
class Profile:
    max_replicas: int = 3
    period_s: float = 5.0  # the HPA sync period (15 s in Kubernetes)
    window_s: float = 60.0  # scale-down stabilization (300 s in hpa.yaml)
    warmup_s: float = 10.0  # quiet time before the burst
    burst_s: float = 150.0
    concurrency: int = 24
    max_tokens: int = 16
    max_num_seqs: int = 4
    max_waiting: int = 8
    max_duration_s: float = 900.0


QUICK = Profile(max_replicas=2, period_s=2.0, window_s=20.0, warmup_s=2.0, burst_s=60.0, concurrency=16)


@dataclass
class Replica:
    name: str
    port: int
    proc: subprocess.Popen
    ready: bool = False
    leaving: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Outcome:
    started: float
    latency_s: float
    status: int


@dataclass
class Demo:
    config: Path
    out: Path
    profile: Profile
    replicas: list[Replica] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    timeline: list[dict] = field(default_factory=list)
    stopping: list[subprocess.Popen] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    names: itertools.count = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        for scratch in ("replicas", "prometheus"):  # a previous run's series and stores must not leak in
            shutil.rmtree(self.out / scratch, ignore_errors=True)
        settings = load_settings(self.config)
        self.settings = settings.model_copy(update={"data_dir": ROOT / settings.data_dir})
        self.model_dir = prepare_model(self.settings).resolve()

    # --- replicas --------------------------------------------------------------------------------

    def start_replica(self) -> Replica:
        name = f"monolith-{next(self.names)}"
        data_dir = self.out / "replicas" / name
        data_dir.mkdir(parents=True, exist_ok=True)
        p = self.profile
        env = {
            **service_env(data_dir, self.model_dir),
            "MONOLITH_ENGINE__MAX_NUM_SEQS": str(p.max_num_seqs),
            "MONOLITH_ADMISSION__MAX_WAITING": str(p.max_waiting),  # unlike the benchmark, admission is on
            "MONOLITH_ADMISSION__MAX_RETRY_AFTER_S": "5",
            "MONOLITH_SHUTDOWN__DRAIN_S": "30",
        }
        port = free_port()
        cmd = [sys.executable, "-m", "monolith.cli", "serve", "--config", str(self.config), "--port", str(port)]
        replica = Replica(name, port, launch(name, cmd, env, data_dir, port).proc)
        self.replicas.append(replica)
        return replica

    def stop_replica(self, replica: Replica) -> None:
        """Out of the balancer first (endpoint removal), then SIGTERM: it drains and exits 0."""
        replica.leaving = True
        self.replicas.remove(replica)
        replica.proc.send_signal(signal.SIGTERM)
        self.stopping.append(replica.proc)

    async def refresh(self, client: httpx.AsyncClient) -> None:
        for replica in self.replicas:
            try:
                replica.ready = (await client.get(f"{replica.url}/health/ready", timeout=2)).status_code == 200
            except httpx.HTTPError:
                replica.ready = False
        for proc in list(self.stopping):
            if proc.poll() is not None:
                self.exit_codes.append(proc.returncode)
                self.stopping.remove(proc)

    # --- load ------------------------------------------------------------------------------------

    async def worker(self, client: httpx.AsyncClient, seed: int, until: float) -> None:
        turn = itertools.count(seed)
        body = {"model": "twin", "prompt": "Explain a KV cache.", "max_tokens": self.profile.max_tokens}
        body["ignore_eos"] = True
        while time.monotonic() < until:
            ready = [r for r in self.replicas if r.ready and not r.leaving]
            if not ready:
                await asyncio.sleep(0.5)
                continue
            target = ready[next(turn) % len(ready)]
            started = time.monotonic()
            try:
                response = await client.post(f"{target.url}/v1/completions", json=body, timeout=180)
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            self.outcomes.append(Outcome(started, time.monotonic() - started, status))
            if status == 429:
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))

    # --- the controller --------------------------------------------------------------------------

    async def run(self) -> dict:
        p = self.profile
        spec = HpaSpec.from_manifest(HPA_MANIFEST)
        spec = replace(
            spec, max_replicas=min(spec.max_replicas, p.max_replicas), down=Rules(p.window_s, spec.down.policies)
        )
        autoscaler = Autoscaler(spec)
        prometheus = Prometheus(self.out / "prometheus", free_port())
        prometheus.start()
        t0 = self.t0 = time.monotonic()
        for _ in range(spec.min_replicas):
            self.start_replica()
        try:
            async with httpx.AsyncClient() as client:
                while not any(r.ready for r in self.replicas):
                    await self.refresh(client)
                    if any(r.proc.poll() is not None for r in self.replicas):
                        raise RuntimeError("a replica exited during start-up")
                    await asyncio.sleep(1)
                ready_at = time.monotonic() - t0
                burst_from = time.monotonic() + p.warmup_s
                burst_to = burst_from + p.burst_s
                load = asyncio.create_task(self.load(burst_from, burst_to))
                settled_since: float | None = None
                while time.monotonic() - t0 < p.max_duration_s:
                    await self.refresh(client)
                    prometheus.set_targets({r.name: f"127.0.0.1:{r.port}" for r in self.replicas})
                    ready = [r.name for r in self.replicas if r.ready]
                    per_pod = prometheus.query(adapter_query(NAMESPACE, ready)) if ready else {}
                    current = len(self.replicas)
                    pending = current - len(ready)
                    now = time.monotonic()
                    desired = autoscaler.decide(now, current, per_pod, pending)
                    for _ in range(desired - current):
                        self.start_replica()
                    # Like a ReplicaSet: unready pods go first, then the newest.
                    newest_first = sorted(reversed(self.replicas), key=lambda r: r.ready)
                    for replica in newest_first[: max(0, current - desired)]:
                        self.stop_replica(replica)
                    self.record(now - t0, now, burst_from, burst_to, current, desired, per_pod, spec, pending)
                    after_burst = now > burst_to and load.done()
                    if after_burst and len(self.replicas) == spec.min_replicas and not self.stopping:
                        settled_since = settled_since or now
                        if now - settled_since >= 2 * p.period_s:
                            break
                    await asyncio.sleep(p.period_s)
                await load
        finally:
            for replica in list(self.replicas):
                self.stop_replica(replica)
            for proc in self.stopping:
                try:
                    self.exit_codes.append(proc.wait(timeout=60))
                except subprocess.TimeoutExpired:
                    kill_tree(proc)
                    self.exit_codes.append(proc.wait())
            prometheus.stop()
        return self.summary(ready_at, spec)

    async def load(self, start: float, until: float) -> None:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        limits = httpx.Limits(max_connections=self.profile.concurrency * 2)
        async with httpx.AsyncClient(limits=limits) as client:
            await asyncio.gather(*(self.worker(client, i, until) for i in range(self.profile.concurrency)))

    def record(self, t, now, burst_from, burst_to, current, desired, per_pod, spec, pending) -> None:
        recent = [o for o in self.outcomes if now - self.profile.period_s <= o.started + o.latency_s <= now]
        ok = [o.latency_s for o in recent if o.status == 200]
        row = {
            "t_s": round(t, 1),
            "phase": "burst" if burst_from <= now < burst_to else "idle",
            "replicas": current,
            "ready": current - pending,
            "desired": desired,
            "recommended": raw_desired(current, per_pod, pending, spec.target),
            "metric": round(sum(per_pod.values()) / len(per_pod), 2) if per_pod else None,
            "per_pod": {k: round(v, 2) for k, v in sorted(per_pod.items())},
            "ok": len(ok),
            "rejected_429": sum(o.status == 429 for o in recent),
            "failed": sum(o.status not in (200, 429) for o in recent),
            "latency_p50_s": round(statistics.median(ok), 2) if ok else None,
        }
        self.timeline.append(row)
        print(
            f"t={row['t_s']:6.1f}s {row['phase']:5} replicas={current} ready={row['ready']} -> {desired} "
            f"metric={row['metric']} per_pod={row['per_pod']} ok={row['ok']} 429={row['rejected_429']} "
            f"failed={row['failed']} p50={row['latency_p50_s']}",
            flush=True,
        )

    def summary(self, ready_at: float, spec: HpaSpec) -> dict:
        statuses: dict[str, int] = {}
        for o in self.outcomes:
            statuses[str(o.status)] = statuses.get(str(o.status), 0) + 1
        return {
            "profile": asdict(self.profile),
            "hpa": {
                "target": spec.target,
                "min": spec.min_replicas,
                "max": spec.max_replicas,
                "window_s": spec.down.stabilization_s,
            },
            "first_replica_ready_s": round(ready_at, 1),
            "peak_replicas": max((r["desired"] for r in self.timeline), default=0),
            "final_replicas": self.timeline[-1]["desired"] if self.timeline else 0,
            "statuses": statuses,
            "replica_exit_codes": self.exit_codes,
            "timeline": self.timeline,
            # each request: seconds since start when it finished, its latency, its status
            "requests": [
                (round(o.started + o.latency_s - self.t0, 2), round(o.latency_s, 2), o.status) for o in self.outcomes
            ],
        }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["timeline"]
    t = [r["t_s"] for r in rows]
    fig, (ax_q, ax_r, ax_l) = plt.subplots(3, 1, sharex=True, figsize=(9, 8))
    ax_q.plot(t, [r["metric"] or 0 for r in rows], label="adapter metric (avg per ready pod)")
    ax_q.axhline(result["hpa"]["target"], linestyle="--", color="grey", label="HPA target")
    ax_q.set_ylabel("queue depth")
    ax_r.step(t, [r["replicas"] for r in rows], where="post", label="replicas")
    ax_r.step(t, [r["ready"] for r in rows], where="post", label="ready")
    ax_r.set_ylabel("replicas")
    served = [(end, latency) for end, latency, status in result["requests"] if status == 200]
    ax_l.scatter([e for e, _ in served], [lat for _, lat in served], s=8, label="latency of each 200 (s)")
    ax_l.bar(t, [r["rejected_429"] for r in rows], alpha=0.3, color="red", label="429s per period")
    ax_l.set_xlabel("seconds")
    burst = [r["t_s"] for r in rows if r["phase"] == "burst"]
    for ax in (ax_q, ax_r, ax_l):
        if burst:
            ax.axvspan(min(burst), max(burst), color="orange", alpha=0.1)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle("monolith scale demo: burst (shaded), HPA on monolith_queue_depth via real Prometheus")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "cpu.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale")
    parser.add_argument("--quick", action="store_true", help="2 replicas at most, a 60 s burst, a 20 s window")
    parser.add_argument("--window", type=float, help="scale-down stabilization seconds (hpa.yaml: 300)")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else Profile()
    if args.window is not None:
        profile = replace(profile, window_s=args.window)
    args.out.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(Demo(args.config.resolve(), args.out.resolve(), profile).run())
    (args.out / "timeline.json").write_text(json.dumps(result, indent=1))
    plot(result, args.out / "scale.png")
    print(
        f"peak replicas {result['peak_replicas']}, final {result['final_replicas']}, statuses {result['statuses']}, "
        f"replica exit codes {result['replica_exit_codes']}; wrote {args.out / 'timeline.json'} and scale.png"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
