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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import uvicorn
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


class JobCallbacks:
    """A receiver on loopback for the jobs' callbacks (`callback_url`): each finished job, as the server shows it,
    comes to the bench when it ends, as it comes to an async client that gave a callback. Polling the job list
    instead (two requests every POLL_S) took ~40% of the monolith's own CPU in a run of the backlog alone, CPU its
    engine shares on this box, where `vllm serve`'s clients wait on their open connections."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict] = {}
        self._arrived = asyncio.Event()
        config = uvicorn.Config(
            self._app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", interface="asgi3"
        )
        self._server = uvicorn.Server(config)
        self._serving: asyncio.Task | None = None

    @property
    def url(self) -> str:
        (port,) = {sock.getsockname()[1] for server in self._server.servers for sock in server.sockets}
        return f"http://127.0.0.1:{port}/"

    async def __aenter__(self) -> JobCallbacks:
        self._serving = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._serving.done():
                await self._serving  # its error
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.should_exit = True
        if self._serving is not None:
            await self._serving

    async def _app(self, scope: dict, receive: Callable, send: Callable) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        job = json.loads(body)
        self.jobs[job["id"]] = job
        self._arrived.set()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def finished(self, ids: set[str], timeout_s: float = 1800) -> list[dict]:
        """The jobs `ids` once each has called back; an error naming those that did not within `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                while not ids <= self.jobs.keys():
                    await self._arrived.wait()
                    self._arrived.clear()  # then looks again: a callback between the wait and the clear is seen
        except TimeoutError:
            raise RuntimeError(f"no callback after {timeout_s} s from jobs {sorted(ids - self.jobs.keys())}") from None
        return [self.jobs[job_id] for job_id in ids]


class MonolithBacklog:
    """Async jobs (each with a callback to `callbacks`) and one HTTP batch, submitted at once; done when every
    job has called back and the batch is complete."""

    def __init__(self, client: httpx.AsyncClient, name: str, traffic: Traffic, callbacks: JobCallbacks) -> None:
        self.client, self.name, self.traffic, self.callbacks = client, name, traffic, callbacks
        self.job_ids: list[str] = []
        self.batch_id: str | None = None

    async def submit(self) -> None:
        """Every job and the batch at once, as many clients with a backlog would send them (and as `vllm serve`
        gets its 48 requests): one after another, the engine took ~2 s of each drain to fill."""
        jobs, lines = background_bodies(self.name, self.traffic)
        hook = {"callback_url": self.callbacks.url}
        responses, self.batch_id = await asyncio.gather(
            asyncio.gather(*(self.client.post("/v1/async/chat/completions", params=hook, json=b) for b in jobs)),
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
        tokens = failures = 0
        for job in await self.callbacks.finished(set(self.job_ids)):
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
        for line in output.text.splitlines():  # the lines answered; the failed ones are in the error file
            tokens += json.loads(line)["response"]["body"]["usage"]["completion_tokens"]
        return tokens, failures + batch["request_counts"]["failed"]


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
        if not system.startswith("monolith"):
            return await with_backlog(system, mode, ConcurrentBacklog(client, name, traffic), base_url, traffic)
        async with JobCallbacks() as callbacks:
            backlog = MonolithBacklog(client, name, traffic, callbacks)
            return await with_backlog(system, mode, backlog, base_url, traffic)


async def with_backlog(
    system: str, mode: Mode, backlog: MonolithBacklog | ConcurrentBacklog, base_url: str, traffic: Traffic
) -> Run:
    started = time.perf_counter()
    await backlog.submit()
    samples = []
    if mode == "mixed":
        await asyncio.sleep(traffic.head_start_s)
        samples = await realtime(base_url, backlog.name, traffic)
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


def schedule(systems: list[str], rounds: dict[Mode, int]) -> list[tuple[Mode, str]]:
    """The runs in order: floors first, then the mixed runs, then the backlog alone; each round in turns, the
    order flipping every round (ABBA)."""
    return [
        (mode, system)
        for mode in MODES
        for i in range(rounds[mode])
        for system in (systems if i % 2 == 0 else systems[::-1])
    ]


def run_rounds(
    systems: dict[str, str], name: str, traffic: Traffic, rounds: dict[Mode, int], quiet_s: float = 0.0
) -> dict:
    """Every run of `schedule`. `quiet_s`: the pause before the backlog alone, so that no system still counts the
    mixed runs' real-time traffic as recent (the monolith's scheduling.realtime_quiet_s)."""
    runs: list[Run] = []
    previous = None
    for mode, system in schedule(list(systems), rounds):
        if mode == "background" and previous != "background":
            time.sleep(quiet_s)
        previous = mode
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
        "alone: the backlog with no real-time traffic. Rounds, pooled (ABBA): "
        f"{result['rounds']['floor']} of the floor, {result['rounds']['mixed']} of the mixed runs, "
        f"{result['rounds']['background']} of the backlog alone.",
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
