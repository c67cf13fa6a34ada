"""Part 6, mixed load: real-time traffic while a background backlog shares the engine.

The same seeded traffic goes to each system: a Poisson stream of streamed real-time chats (short answers), and a
backlog of long background answers (`ignore_eos`). The monolith gets the backlog the way its users send it:
async chat jobs (`/v1/async/chat/completions`) and one HTTP batch (`/v1/files` + `/v1/batches`); `vllm serve`,
which has neither, gets the same requests as ordinary concurrent chat completions, as its users would send them.
Per system: real-time TTFT and inter-token latency (the gaps between streamed chunks), real-time end to end, the
background's goodput (its output tokens over the time the backlog took to drain) and that drain time; the
real-time figures with no background at all (the floor); and the backlog alone, with no real-time traffic
(what a fixed background share would leave idle shows as goodput below `vllm serve`'s)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
from httpx_sse import aconnect_sse

from monolith.bench.load import TOPICS, percentile

POLL_S = 0.25
Mode = Literal["floor", "mixed", "background"]  # real-time alone, both, the backlog alone
MODES: tuple[Mode, ...] = ("floor", "mixed", "background")
SHOWN = {"floor": "no (floor)", "mixed": "yes", "background": "alone"}


@dataclass(frozen=True)
class Traffic:
    realtime_rate: float  # real-time arrivals per second (Poisson)
    realtime_requests: int
    realtime_max_tokens: int
    jobs: int  # background: async chat jobs
    job_max_tokens: int
    batch_lines: int  # background: lines of one HTTP batch
    batch_max_tokens: int
    head_start_s: float = 2.0  # the backlog is in the engine before real-time traffic starts
    seed: int = 11
    # A tag in every prompt, after the request's own number: each run's prompts are its own, so that no run finds
    # an earlier one's KV blocks in the engine's prefix cache (the rounds repeat the same seeded traffic).
    run: str = ""


@dataclass
class Streamed:
    status: int
    ttft_s: float | None = None
    gaps_s: list[float] = field(default_factory=list)  # between successive content chunks
    e2e_s: float = 0.0
    tokens: int = 0


def chat(name: str, i: int, max_tokens: int, what: str, stream: bool, run: str) -> dict:
    topic = TOPICS[i % len(TOPICS)]
    body = {
        "model": name,
        "messages": [{"role": "user", "content": f"{what} {i} ({run}): explain {topic} to an engineer."}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,  # the same output length on every system
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


async def streamed_chat(client: httpx.AsyncClient, body: dict) -> Streamed:
    started = time.perf_counter()
    sample = Streamed(0)
    last = None
    try:
        async with aconnect_sse(client, "POST", "/v1/chat/completions", json=body) as events:
            sample.status = events.response.status_code
            if sample.status != 200:
                await events.response.aread()
                return sample
            async for event in events.aiter_sse():
                if event.data == "[DONE]":
                    continue
                chunk = json.loads(event.data)
                if chunk.get("usage"):
                    sample.tokens = chunk["usage"]["completion_tokens"]
                if any((c.get("delta") or {}).get("content") for c in chunk.get("choices", [])):
                    now = time.perf_counter()
                    if last is None:
                        sample.ttft_s = now - started
                    else:
                        sample.gaps_s.append(now - last)
                    last = now
    except httpx.HTTPError:
        sample.status = 0
    sample.e2e_s = time.perf_counter() - started
    return sample


async def realtime(base_url: str, name: str, traffic: Traffic) -> list[Streamed]:
    rng = random.Random(traffic.seed)
    async with httpx.AsyncClient(base_url=base_url, timeout=900, limits=httpx.Limits(max_connections=None)) as client:
        tasks = []
        for i in range(traffic.realtime_requests):
            body = chat(name, i, traffic.realtime_max_tokens, "Question", stream=True, run=traffic.run)
            tasks.append(asyncio.create_task(streamed_chat(client, body)))
            await asyncio.sleep(rng.expovariate(traffic.realtime_rate))
        return list(await asyncio.gather(*tasks))


def background_bodies(name: str, traffic: Traffic) -> tuple[list[dict], list[dict]]:
    jobs = [chat(name, i, traffic.job_max_tokens, "Essay", False, traffic.run) for i in range(traffic.jobs)]
    lines = [chat(name, i, traffic.batch_max_tokens, "Summary", False, traffic.run) for i in range(traffic.batch_lines)]
    return jobs, lines


async def unfinished_jobs(client: httpx.AsyncClient) -> set[str]:
    """The ids of the jobs queued or running (up to 1000 of each): two list requests, where a GET per job per
    poll would take this 2-core box's CPU from the engine as a backlog grows."""
    unfinished: set[str] = set()
    for status in ("queued", "running"):
        page = await client.get("/v1/jobs", params={"status": status, "limit": 1000})
        unfinished |= {job["id"] for job in page.json()["data"]}
    return unfinished


class MonolithBacklog:
    """Async jobs and one HTTP batch, submitted at once; done when every job and the batch are."""

    def __init__(self, client: httpx.AsyncClient, name: str, traffic: Traffic) -> None:
        self.client, self.name, self.traffic = client, name, traffic
        self.job_ids: list[str] = []
        self.batch_id: str | None = None

    async def submit(self) -> None:
        """Every job and the batch at once, as many clients with a backlog would send them (and as `vllm serve`
        gets its 48 requests): one after another, the engine took ~2 s of each drain to fill."""
        jobs, lines = background_bodies(self.name, self.traffic)
        responses, self.batch_id = await asyncio.gather(
            asyncio.gather(*(self.client.post("/v1/async/chat/completions", json=body) for body in jobs)),
            self._submit_batch(lines),
        )
        for response in responses:
            response.raise_for_status()
            self.job_ids.append(response.json()["id"])

    async def _submit_batch(self, lines: list[dict]) -> str | None:
        if not lines:
            return None
        content = "\n".join(
            json.dumps({"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions", "body": b})
            for i, b in enumerate(lines)
        )
        upload = await self.client.post(
            "/v1/files", files={"file": ("mixed.jsonl", content.encode())}, data={"purpose": "batch"}
        )
        upload.raise_for_status()
        batch = await self.client.post(
            "/v1/batches", json={"input_file_id": upload.json()["id"], "endpoint": "/v1/chat/completions"}
        )
        batch.raise_for_status()
        return batch.json()["id"]

    async def drained(self) -> tuple[int, int]:
        """(output tokens, failures) once everything finished: the jobs and the batch watched side by side, so
        that the drain ends within a poll of the last of them."""
        (job_tokens, job_failures), (line_tokens, line_failures) = await asyncio.gather(
            self._jobs_drained(), self._batch_drained()
        )
        return job_tokens + line_tokens, job_failures + line_failures

    async def _jobs_drained(self) -> tuple[int, int]:
        """The jobs, seen through `unfinished_jobs`."""
        tokens = failures = 0
        mine = set(self.job_ids)
        while await unfinished_jobs(self.client) & mine:
            await asyncio.sleep(POLL_S)
        for job_id in self.job_ids:
            job = (await self.client.get(f"/v1/jobs/{job_id}")).json()
            if job["status"] == "succeeded":
                tokens += job["result"]["usage"]["completion_tokens"]
            else:
                failures += 1
        return tokens, failures

    async def _batch_drained(self) -> tuple[int, int]:
        tokens = failures = 0
        if self.batch_id is None:
            return tokens, failures
        while True:
            batch = (await self.client.get(f"/v1/batches/{self.batch_id}")).json()
            if batch["status"] in ("completed", "failed", "cancelled"):
                break
            await asyncio.sleep(POLL_S)
        output = await self.client.get(f"/v1/files/{batch['output_file_id']}/content")
        for line in output.text.splitlines():
            answer = json.loads(line)["response"]
            if answer["status_code"] == 200:
                tokens += answer["body"]["usage"]["completion_tokens"]
            else:
                failures += 1
        return tokens, failures


class ConcurrentBacklog:
    """The same backlog as plain concurrent chat completions (what a `vllm serve` user sends)."""

    def __init__(self, client: httpx.AsyncClient, name: str, traffic: Traffic) -> None:
        self.client, self.name, self.traffic = client, name, traffic
        self.tasks: list[asyncio.Task] = []

    async def submit(self) -> None:
        jobs, lines = background_bodies(self.name, self.traffic)
        self.tasks = [asyncio.create_task(self.client.post("/v1/chat/completions", json=b)) for b in jobs + lines]

    async def drained(self) -> tuple[int, int]:
        tokens = failures = 0
        for response in await asyncio.gather(*self.tasks, return_exceptions=True):
            if isinstance(response, httpx.Response) and response.status_code == 200:
                tokens += response.json()["usage"]["completion_tokens"]
            else:
                failures += 1
        return tokens, failures


def realtime_figures(samples: list[Streamed]) -> dict:
    ok = [s for s in samples if s.status == 200 and s.ttft_s is not None]
    ttft = [s.ttft_s for s in ok if s.ttft_s is not None]
    gaps = [g for s in ok for g in s.gaps_s]
    e2e = [s.e2e_s for s in ok]

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    return {
        "realtime_requests": len(samples),
        "realtime_errors": len(samples) - len(ok),
        "ttft_p50_s": r(percentile(ttft, 50)),
        "ttft_p99_s": r(percentile(ttft, 99)),
        "itl_p50_s": r(percentile(gaps, 50)),
        "itl_p99_s": r(percentile(gaps, 99)),
        "e2e_p99_s": r(percentile(e2e, 99)),
    }


@dataclass
class Run:
    system: str
    mode: Mode
    samples: list[Streamed]
    background_tokens: int = 0
    background_failures: int = 0
    drain_s: float = 0.0


async def measure(system: str, base_url: str, name: str, traffic: Traffic, mode: Mode) -> Run:
    """One run: the backlog (unless the floor), a head start, the real-time stream (unless the backlog alone),
    then the drain."""
    limits = httpx.Limits(max_connections=None)
    traffic = dataclasses.replace(traffic, run=secrets.token_hex(4))
    async with httpx.AsyncClient(base_url=base_url, timeout=1800, limits=limits) as client:
        if mode == "floor":
            return Run(system, mode, await realtime(base_url, name, traffic))
        kind = MonolithBacklog if system.startswith("monolith") else ConcurrentBacklog
        backlog = kind(client, name, traffic)
        started = time.perf_counter()
        await backlog.submit()
        samples = []
        if mode == "mixed":
            await asyncio.sleep(traffic.head_start_s)
            samples = await realtime(base_url, name, traffic)
        tokens, failures = await backlog.drained()
        return Run(system, mode, samples, tokens, failures, time.perf_counter() - started)


def summarize(runs: list[Run]) -> list[dict]:
    """One row per system and mode, over every round's samples (ABBA rounds pooled)."""
    rows = []
    for key in dict.fromkeys((r.system, r.mode) for r in runs):
        mine = [r for r in runs if (r.system, r.mode) == key]
        row: dict = {"system": key[0], "mode": key[1], "rounds": len(mine)}
        if key[1] != "background":
            row |= realtime_figures([s for r in mine for s in r.samples])
        if key[1] != "floor":
            tokens, drain = sum(r.background_tokens for r in mine), sum(r.drain_s for r in mine)
            row |= {
                "background_tokens": tokens,
                "background_failures": sum(r.background_failures for r in mine),
                "drain_s": round(drain / len(mine), 2),
                "background_tok_s": round(tokens / drain, 2) if drain else None,
            }
        rows.append(row)
    return rows


def run_rounds(systems: dict[str, str], name: str, traffic: Traffic, rounds: int, quiet_s: float = 0.0) -> dict:
    """Floors first, then the mixed runs, then the backlog alone; each round in turns, the order flipping every
    round (ABBA). `quiet_s`: the pause before the backlog alone, so that no system still counts the mixed runs'
    real-time traffic as recent (the monolith's scheduling.realtime_quiet_s)."""
    order = list(systems)
    runs = []
    for mode in MODES:
        if mode == "background":
            time.sleep(quiet_s)
        for i in range(rounds):
            for system in order if i % 2 == 0 else order[::-1]:
                run = asyncio.run(measure(system, systems[system], name, traffic, mode))
                figures = realtime_figures(run.samples) if run.samples else {"drain_s": round(run.drain_s, 2)}
                print(json.dumps({"system": system, "mode": mode, **figures}))
                runs.append(run)
    rows = summarize(runs)
    return {"traffic": traffic.__dict__, "rounds": rounds, "rows": rows, "ratios": ratios(rows)}


def ratios(rows: list[dict]) -> list[dict]:
    """Each system's mixed-load figures against its own floor, and the monolith's against `vllm serve`'s (mixed,
    and the backlog alone)."""
    floors = {r["system"]: r for r in rows if r["mode"] == "floor"}
    mixed = {r["system"]: r for r in rows if r["mode"] == "mixed"}
    alone = {r["system"]: r for r in rows if r["mode"] == "background"}
    out = []
    for system, row in mixed.items():
        floor = floors.get(system)
        peer = mixed.get("vllm")
        entry: dict = {"system": system}
        if floor:
            for key in ("ttft_p99_s", "itl_p99_s"):
                entry[f"{key[:-2]}_vs_floor"] = _ratio(row[key], floor[key])
        if peer and system != "vllm":
            entry["ttft_p99_vs_vllm"] = _ratio(row["ttft_p99_s"], peer["ttft_p99_s"])
            entry["goodput_vs_vllm"] = _ratio(row["background_tok_s"], peer["background_tok_s"])
        if system in alone and "vllm" in alone and system != "vllm":
            entry["goodput_alone_vs_vllm"] = _ratio(
                alone[system]["background_tok_s"], alone["vllm"]["background_tok_s"]
            )
        out.append(entry)
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def markdown(result: dict | None) -> list[str]:
    if not result:
        return []
    t = result["traffic"]
    lines = [
        "",
        f"Mixed load: real-time streamed chats ({t['realtime_requests']} at {t['realtime_rate']}/s Poisson, "
        f"{t['realtime_max_tokens']} tokens) while a backlog shares the engine ({t['jobs']} async chat jobs of "
        f"{t['job_max_tokens']} tokens and a {t['batch_lines']}-line HTTP batch of {t['batch_max_tokens']}; to "
        "`vllm serve` the same as concurrent chat requests). Floor: the same real-time stream with no backlog; "
        "alone: the backlog with no real-time traffic.",
        "",
        "| system | backlog | TTFT p50 | TTFT p99 | ITL p50 | ITL p99 | e2e p99 | background tok/s | drain s "
        "| errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rows"]:
        errors = r.get("realtime_errors", 0) + r.get("background_failures", 0)
        lines.append(
            f"| {r['system']} | {SHOWN[r['mode']]} | {r.get('ttft_p50_s', '')} | {r.get('ttft_p99_s', '')} "
            f"| {r.get('itl_p50_s', '')} | {r.get('itl_p99_s', '')} | {r.get('e2e_p99_s', '')} "
            f"| {r.get('background_tok_s', '')} "
            f"| {r.get('drain_s', '')} | {errors} |"
        )
    lines += [
        "",
        "| system | TTFT p99 / floor | ITL p99 / floor | TTFT p99 / vllm | goodput / vllm | goodput alone / vllm |",
    ]
    lines += ["| --- | --- | --- | --- | --- | --- |"]
    lines += [
        f"| {r['system']} | {r.get('ttft_p99_vs_floor')} | {r.get('itl_p99_vs_floor')} | "
        f"{r.get('ttft_p99_vs_vllm', '')} | {r.get('goodput_vs_vllm', '')} | {r.get('goodput_alone_vs_vllm', '')} |"
        for r in result["ratios"]
    ]
    return lines


def plot(result: dict | None, out: Path) -> None:
    """mixed.png: real-time TTFT and inter-token latency p99 per system, alone (floor) and beside the backlog."""
    if not result:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    systems = list(dict.fromkeys(r["system"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, key, title in zip(axes, ("ttft_p99_s", "itl_p99_s"), ("TTFT p99 (s)", "inter-token p99 (s)"), strict=True):
        for offset, mode in ((-0.2, "floor"), (0.2, "mixed")):
            values = [next((r[key] for r in rows if r["system"] == s and r["mode"] == mode), 0) or 0 for s in systems]
            ax.bar(
                [i + offset for i in range(len(systems))],
                values,
                0.4,
                label="with backlog" if mode == "mixed" else "floor",
            )
        ax.set_xticks(range(len(systems)), systems)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.suptitle("real-time under a background backlog (bench part 6)")
    fig.tight_layout()
    fig.savefig(out / "mixed.png", dpi=100)
    plt.close(fig)
