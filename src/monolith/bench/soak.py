"""`make soak`: a long run of mixed traffic at about half capacity, watching for what only time shows.

One monolith on a real PostgreSQL job store (as a replica in production runs) gets, for `--minutes`:
real-time traffic (chat, streamed chat of which some clients hang up mid-answer, completions, /rag,
embeddings), async chat jobs polled to the end, and every few minutes an HTTP batch (upload, create, poll,
download, delete both files, as a client cleans up). Every `--interval` seconds it records the resident memory
and open file descriptors of the server process and of vLLM's engine core (its child), the server's
connections to PostgreSQL (pg_stat_activity), and the queue depth the HPA reads.

The offered load is `--load` (0.5) times the capacity measured first (a closed loop at engine.max_num_seqs),
split between real-time, async and batch by output tokens. Memory is judged after `--warmup-minutes` (5): the
allocator, the KV cache and the caches of tokenizer and embedder settle first. Targets: RSS growth
under 5% from then to the end; no growth in file descriptors or database connections (the lowest value of
the last minutes against the lowest after warm-up: in-flight requests hold sockets, a leak raises the floor).

Writes soak.json (every sample, every count, the verdicts), soak.md and soak.png under `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from httpx_sse import aconnect_sse
from prometheus_client.parser import text_string_to_metric_families

from monolith.bench.load import TOPICS
from monolith.bench.peers import ROOT, Server, start_monolith
from monolith.bench.postgres import PostgresServer
from monolith.config import Settings, load_settings
from monolith.model_prep import prepare_model

DATABASE = "soak"
RSS_GROWTH_TARGET = 0.05
SHARES = {"realtime": 0.5, "async": 0.3, "batch": 0.2}  # of the offered output tokens
# The real-time mix: (what, weight); embeddings produce no output tokens and cost little.
REALTIME_MIX = (("chat", 4), ("chat_stream", 2), ("chat_hangup", 1), ("completion", 1), ("rag", 1), ("embed", 1))
POLL_S = 2.0


async def unfinished_jobs(client: httpx.AsyncClient) -> set[str]:
    """The ids of the jobs queued or running (up to 1000 of each): two list requests, where a GET per job per
    poll would take this 2-core box's CPU from the engine as a backlog grows."""
    unfinished: set[str] = set()
    for status in ("queued", "running"):
        page = await client.get("/v1/jobs", params={"status": status, "limit": 1000})
        unfinished |= {job["id"] for job in page.json()["data"]}
    return unfinished


@dataclass(frozen=True)
class Plan:
    minutes: float
    warmup_minutes: float
    interval_s: float
    load: float
    realtime_tokens: int = 32
    job_tokens: int = 64
    batch_tokens: int = 32
    batch_every_s: float = 120.0
    seed: int = 7


@dataclass
class Sample:
    t_s: float
    server_rss_mb: float
    engine_rss_mb: float
    server_fds: int
    engine_fds: int
    db_connections: int
    queue_depth: float
    async_backlog: float
    requests_running: float


class Tally:
    """Outcomes by kind and status: what the load got back (a soak that quietly fails requests proves nothing)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.tokens = 0

    def add(self, kind: str, status: int | str, tokens: int = 0) -> None:
        self.counts[f"{kind} {status}"] += 1
        self.tokens += tokens


def chat_body(name: str, i: int, max_tokens: int, stream: bool = False) -> dict:
    body = {
        "model": name,
        "messages": [{"role": "user", "content": f"Note {i}: explain {TOPICS[i % len(TOPICS)]} to an engineer."}],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "seed": i,
        "ignore_eos": True,  # a known output length, so the offered load is what the plan says
    }
    return body | ({"stream": True} if stream else {})


class Load:
    def __init__(self, client: httpx.AsyncClient, settings: Settings, plan: Plan, tally: Tally) -> None:
        self.client, self.plan, self.tally = client, plan, tally
        self.name, self.embedder = settings.engine.served_model_name, settings.embedder.served_model_name
        self.tasks: set[asyncio.Task] = set()
        self.pending: set[str] = set()  # submitted async jobs not yet seen ended

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def realtime(self, kind: str, i: int) -> None:
        tokens = self.plan.realtime_tokens
        try:
            if kind in ("chat_stream", "chat_hangup"):
                await self.stream(kind, i, tokens)
                return
            path, body = {
                "chat": ("/v1/chat/completions", chat_body(self.name, i, tokens)),
                "completion": (
                    "/v1/completions",
                    {
                        "model": self.name,
                        "prompt": f"Note {i} on {TOPICS[i % 8]}:",
                        "max_tokens": tokens,
                        "ignore_eos": True,
                    },
                ),
                "rag": ("/rag", {"query": f"What was written about {TOPICS[i % 8]}?", "max_tokens": tokens}),
                "embed": ("/v1/embeddings", {"model": self.embedder, "input": [f"note {i}", TOPICS[i % 8]]}),
            }[kind]
            response = await self.client.post(path, json=body)
            produced = 0
            if response.status_code == 200 and kind != "embed":
                usage = response.json().get("usage") or {}
                produced = usage.get("completion_tokens") or usage.get("output_tokens") or 0
            self.tally.add(kind, response.status_code, produced)
        except httpx.HTTPError as error:
            self.tally.add(kind, type(error).__name__)

    async def stream(self, kind: str, i: int, tokens: int) -> None:
        body = chat_body(self.name, i, tokens, stream=True)
        chunks = 0
        async with aconnect_sse(self.client, "POST", "/v1/chat/completions", json=body) as events:
            if events.response.status_code != 200:
                await events.response.aread()
                self.tally.add(kind, events.response.status_code)
                return
            async for event in events.aiter_sse():
                chunks += event.data != "[DONE]"
                if kind == "chat_hangup" and chunks == 3:
                    break  # the client goes away mid-answer: the server must abort and free everything
        self.tally.add(kind, 200, chunks)

    async def job(self, i: int) -> None:
        try:
            body = chat_body(self.name, i, self.plan.job_tokens)
            response = await self.client.post("/v1/async/chat/completions", json=body)
            if response.status_code != 202:
                self.tally.add("job submit", response.status_code)
                return
            self.pending.add(response.json()["id"])
        except (httpx.HTTPError, KeyError, ValueError) as error:
            self.tally.add("job submit", type(error).__name__)

    async def poll_jobs(self, stop_at: float) -> None:
        """Each round, the list of unfinished jobs says which submitted ones ended; each ended job is read once."""
        while self.pending or time.monotonic() < stop_at:
            await asyncio.sleep(POLL_S)
            try:
                # Only jobs submitted before the lists were read: one submitted meanwhile is in no list yet.
                candidates = set(self.pending)
                for job_id in candidates - await unfinished_jobs(self.client):
                    job = (await self.client.get(f"/v1/jobs/{job_id}")).json()
                    if job["status"] in ("queued", "running"):
                        continue  # it moved between the two lists (requeued after a preemption): next round
                    tokens = job["result"]["usage"]["completion_tokens"] if job["status"] == "succeeded" else 0
                    self.tally.add("job", job["status"], tokens)
                    self.pending.discard(job_id)
            except (httpx.HTTPError, KeyError, ValueError) as error:
                self.tally.add("job poll", type(error).__name__)

    async def batch(self, n: int, lines: int) -> None:
        content = "\n".join(
            json.dumps(
                {
                    "custom_id": f"b{n}-{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": chat_body(self.name, n * 1000 + i, self.plan.batch_tokens),
                }
            )
            for i in range(lines)
        )
        try:
            upload = await self.client.post(
                "/v1/files", files={"file": (f"soak-{n}.jsonl", content.encode())}, data={"purpose": "batch"}
            )
            upload.raise_for_status()
            created = await self.client.post(
                "/v1/batches",
                json={
                    "input_file_id": upload.json()["id"],
                    "endpoint": "/v1/chat/completions",
                    "completion_window": "24h",
                },
            )
            created.raise_for_status()
            batch_id = created.json()["id"]
            while True:
                await asyncio.sleep(POLL_S * 2)
                batch = (await self.client.get(f"/v1/batches/{batch_id}")).json()
                if batch["status"] in ("completed", "failed", "cancelled", "expired"):
                    break
            tokens = 0
            for file_id in (batch.get("output_file_id"), batch.get("error_file_id")):  # answered, failed lines
                if not file_id:
                    continue
                output = await self.client.get(f"/v1/files/{file_id}/content")
                for line in output.text.splitlines():
                    answer = json.loads(line)["response"]
                    self.tally.add("batch line", answer["status_code"])
                    if answer["status_code"] == 200:
                        tokens += answer["body"]["usage"]["completion_tokens"]
                await self.client.delete(f"/v1/files/{file_id}")
            await self.client.delete(f"/v1/files/{upload.json()['id']}")
            self.tally.add("batch", batch["status"], tokens)
        except (httpx.HTTPError, KeyError, ValueError) as error:
            self.tally.add("batch", type(error).__name__)


async def capacity(client: httpx.AsyncClient, name: str, concurrency: int, tokens: int, seconds: float) -> float:
    """Output tokens per second of a closed loop at the engine's width: what 'half capacity' is half of."""
    produced = 0
    stop = time.monotonic() + seconds

    async def loop(worker: int) -> None:
        nonlocal produced
        i = worker
        while time.monotonic() < stop:
            response = await client.post("/v1/chat/completions", json=chat_body(name, i, tokens))
            if response.status_code == 200:
                produced += response.json()["usage"]["completion_tokens"]
            i += concurrency

    started = time.monotonic()
    await asyncio.gather(*(loop(w) for w in range(concurrency)))
    return produced / (time.monotonic() - started)


def rates(plan: Plan, tokens_per_s: float) -> dict[str, float]:
    """Arrivals per second (real-time, jobs) and lines per batch, from the offered share of output tokens."""
    offered = plan.load * tokens_per_s
    realtime_tokens = (
        plan.realtime_tokens * sum(w for k, w in REALTIME_MIX if k != "embed") / sum(w for _, w in REALTIME_MIX)
    )
    return {
        "offered_tokens_per_s": round(offered, 1),
        "realtime_per_s": round(SHARES["realtime"] * offered / realtime_tokens, 3),
        "jobs_per_s": round(SHARES["async"] * offered / plan.job_tokens, 3),
        "batch_lines": max(1, round(SHARES["batch"] * offered * plan.batch_every_s / plan.batch_tokens)),
    }


async def drive(load: Load, plan: Plan, arrivals: dict[str, float], stop_at: float) -> None:
    rng = random.Random(plan.seed)
    kinds = [k for k, _ in REALTIME_MIX]
    weights = [w for _, w in REALTIME_MIX]

    async def realtime() -> None:
        i = 0
        while time.monotonic() < stop_at:
            load.spawn(load.realtime(rng.choices(kinds, weights)[0], i))
            i += 1
            await asyncio.sleep(rng.expovariate(arrivals["realtime_per_s"]))

    async def jobs() -> None:
        i = 0
        while time.monotonic() < stop_at:
            load.spawn(load.job(i))
            i += 1
            await asyncio.sleep(rng.expovariate(arrivals["jobs_per_s"]))

    async def batches() -> None:
        n = 0
        while time.monotonic() < stop_at:
            load.spawn(load.batch(n, int(arrivals["batch_lines"])))
            n += 1
            await asyncio.sleep(min(plan.batch_every_s, max(0.0, stop_at - time.monotonic())))

    await asyncio.gather(realtime(), jobs(), batches())


class Probe:
    """The numbers a leak shows in: read from outside the server, as an operator's node exporter would."""

    def __init__(self, server: Server, database_url: str, base_url: str) -> None:
        self.server = psutil.Process(server.proc.pid)
        self.database_url = database_url
        self.base_url = base_url

    def engine(self) -> list[psutil.Process]:
        return self.server.children(recursive=True)

    def db_connections(self) -> int:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (DATABASE,)
            ).fetchone()
        return int(row[0]) if row else 0

    def metrics(self) -> dict[str, float]:
        text = httpx.get(self.base_url + "/metrics", timeout=10).text
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if not sample.labels
        }

    def sample(self, t_s: float) -> Sample:
        engine = self.engine()
        gauges = self.metrics()
        return Sample(
            t_s=round(t_s, 1),
            server_rss_mb=round(self.server.memory_info().rss / 2**20, 1),
            engine_rss_mb=round(sum(p.memory_info().rss for p in engine) / 2**20, 1),
            server_fds=self.server.num_fds(),
            engine_fds=sum(p.num_fds() for p in engine),
            db_connections=self.db_connections(),
            queue_depth=gauges.get("monolith_queue_depth", 0.0),
            async_backlog=gauges.get("monolith_async_backlog", 0.0),
            requests_running=gauges.get("monolith_requests_running", 0.0),
        )


def verdicts(samples: list[Sample], plan: Plan) -> dict[str, dict]:
    """After warm-up. RSS: the median of the last minute against the first minute's (the soak's target).
    File descriptors and connections: in-flight requests hold sockets and a pool opens connections up to its
    size on a busy moment and keeps them, so a step up is not a leak and a rising floor is; the judged time is
    cut in thirds and the floor (lowest value) of the last third must be no higher than the middle third's.
    Each also reports its floor per third, and the highest value seen."""
    settled = [s for s in samples if s.t_s >= plan.warmup_minutes * 60]
    if len(settled) < 6:
        return {}
    window = max(2, int(60 / plan.interval_s))
    first, last = settled[:window], settled[-window:]
    out: dict[str, dict] = {}
    for field in ("server_rss_mb", "engine_rss_mb"):
        start = round(statistics.median(getattr(s, field) for s in first), 1)
        end = round(statistics.median(getattr(s, field) for s in last), 1)
        growth = (end - start) / start if start else 0.0
        out[field] = {
            "after_warmup": start,
            "end": end,
            "growth": round(growth, 4),
            "target": f"< {RSS_GROWTH_TARGET:.0%}",
            "ok": growth < RSS_GROWTH_TARGET,
        }
    third = len(settled) // 3
    thirds = (settled[:third], settled[third : 2 * third], settled[2 * third :])
    for field in ("server_fds", "engine_fds", "db_connections"):
        floors = [min(getattr(s, field) for s in part) for part in thirds]
        out[field] = {
            "after_warmup": floors[0],
            "end": floors[2],
            "growth": floors[2] - floors[1],
            "floors_by_third": floors,
            "max": max(getattr(s, field) for s in settled),
            "target": "no growth",
            "ok": floors[2] <= floors[1],
        }
    return out


def markdown(result: dict) -> str:
    plan, arrivals = result["plan"], result["arrivals"]
    lines = [
        f"# Soak ({result['machine']})",
        "",
        f"{result['minutes_run']:.1f} minutes of mixed traffic at {plan['load']:.0%} of the measured capacity "
        f"({result['capacity_tokens_per_s']:.1f} output tok/s, a closed loop at max_num_seqs): "
        f"{arrivals['realtime_per_s']} real-time requests/s, {arrivals['jobs_per_s']} async jobs/s, a batch of "
        f"{arrivals['batch_lines']} lines every {plan['batch_every_s']:.0f} s; a sample every "
        f"{plan['interval_s']:.0f} s. Judged after the first {plan['warmup_minutes']:.0f} minutes.",
        "",
        "RSS: the median of the first minute after warm-up against the last minute's. Descriptors and "
        "connections: the floor (lowest value) of each third of the judged time; growth is the last third's "
        "against the middle third's (a pool filling to its size on a busy moment is a step, a leak a rising floor).",
        "",
        "| measure | after warm-up | end | growth | target | |",
        "|---|---|---|---|---|---|",
    ]
    for field, v in result["verdicts"].items():
        growth = f"{v['growth']:+.1%}" if "rss" in field else f"{v['growth']:+d} (floors {v['floors_by_third']})"
        lines.append(
            f"| {field} | {v['after_warmup']} | {v['end']} | {growth} | {v['target']} "
            f"| {'ok' if v['ok'] else 'MISSED'} |"
        )
    samples = result["samples"]
    for field in ("queue_depth", "async_backlog"):
        settled = [s[field] for s in samples if s["t_s"] >= plan["warmup_minutes"] * 60] or [0]
        lines.append(f"| {field} | | {settled[-1]:.0f} | max {max(settled):.0f} | recorded | |")
    lines += [
        "",
        f"After the load stopped, what was in flight took {result['tail_s']:.0f} s to finish "
        f"({result['unfinished_jobs_at_the_end']} async jobs still unfinished).",
        "",
        "Outcomes:",
        "",
    ]
    lines += [f"- {key}: {count}" for key, count in sorted(result["outcomes"].items())]
    lines += ["", f"Output tokens delivered: {result['tokens']}.", "", "![soak](soak.png)", ""]
    return "\n".join(lines)


def plot(samples: list[Sample], plan: Plan, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s.t_s / 60 for s in samples]
    panels = (
        ("resident memory (MiB)", ("server_rss_mb", "engine_rss_mb")),
        ("open file descriptors", ("server_fds", "engine_fds")),
        ("PostgreSQL connections", ("db_connections",)),
        ("queue", ("queue_depth", "async_backlog", "requests_running")),
    )
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 9), sharex=True)
    for ax, (label, fields) in zip(axes, panels, strict=True):
        for field in fields:
            ax.plot(minutes, [getattr(s, field) for s in samples], label=field)
        ax.axvspan(0, plan.warmup_minutes, color="0.9")
        ax.set_ylabel(label, fontsize=8)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("minutes (shaded: warm-up, not judged)")
    fig.suptitle("make soak")
    fig.tight_layout()
    fig.savefig(out / "soak.png", dpi=100)
    plt.close(fig)


async def soak(server: Server, probe: Probe, settings: Settings, plan: Plan) -> dict:
    name = settings.engine.served_model_name
    tally = Tally()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=600, limits=limits) as client:
        tokens_per_s = await capacity(client, name, settings.engine.max_num_seqs, plan.job_tokens, 45)
        arrivals = rates(plan, tokens_per_s)
        print(f"capacity {tokens_per_s:.1f} tok/s; arrivals {arrivals}", flush=True)
        load = Load(client, settings, plan, tally)
        started = time.monotonic()
        stop_at = started + plan.minutes * 60
        samples: list[Sample] = []

        async def sampler() -> None:
            while time.monotonic() < stop_at:
                sample = await asyncio.to_thread(probe.sample, time.monotonic() - started)
                samples.append(sample)
                print(json.dumps(asdict(sample)), flush=True)
                await asyncio.sleep(plan.interval_s)

        # What is still in flight when the load stops (the backlog, a batch) finishes, within bounds.
        poller = asyncio.create_task(load.poll_jobs(stop_at))
        await asyncio.gather(drive(load, plan, arrivals, stop_at), sampler())
        tail = time.monotonic()
        await asyncio.wait({poller, *load.tasks}, timeout=900)
        poller.cancel()
        tail_s = time.monotonic() - tail
        minutes_run = (tail - started) / 60
    return {
        "tail_s": round(tail_s, 1),
        "unfinished_jobs_at_the_end": len(load.pending),
        "capacity_tokens_per_s": round(tokens_per_s, 1),
        "arrivals": arrivals,
        "samples": [asdict(s) for s in samples],
        "verdicts": verdicts(samples, plan),
        "outcomes": dict(tally.counts),
        "tokens": tally.tokens,
        "minutes_run": round(minutes_run, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a long mixed-traffic run, watching memory, fds and connections")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "cpu.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--warmup-minutes", type=float, default=5)
    parser.add_argument("--interval", type=float, default=10)
    parser.add_argument("--load", type=float, default=0.5, help="the share of the measured capacity offered")
    args = parser.parse_args(argv)
    plan = Plan(args.minutes, min(args.warmup_minutes, args.minutes / 2), args.interval, args.load)
    settings = load_settings(args.config)
    settings = settings.model_copy(update={"data_dir": ROOT / settings.data_dir})
    model_dir = prepare_model(settings).resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "tmp"
    postgres = PostgresServer().start()
    server = None
    try:
        url = postgres.create_database(DATABASE)
        env = {"MONOLITH_STORE__DATABASE": url, "MONOLITH_ADMISSION__MAX_WAITING": "64"}
        server = start_monolith(args.config, settings, model_dir, work, env)
        server.wait_ready("/health/ready")
        result = asyncio.run(soak(server, Probe(server, postgres.url(), server.base_url), settings, plan))
    finally:
        exit_code = server.stop() if server is not None else None
        postgres.stop()
    result |= {
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, config {args.config.name}",
        "plan": asdict(plan),
        "server_exit_code": exit_code,
    }
    (args.out / "soak.json").write_text(json.dumps(result, indent=1))
    (args.out / "soak.md").write_text(markdown(result))
    plot([Sample(**s) for s in result["samples"]], plan, args.out)
    print(markdown(result))
    return 0 if all(v["ok"] for v in result["verdicts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
