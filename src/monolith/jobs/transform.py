"""Offline batch transform: a file of request lines in, a file of output lines out; resumable, many in flight.
`monolith batch` runs it with a progress bar, the HTTP batch runner (jobs.batches) behind real-time traffic."""

from __future__ import annotations

import asyncio
import errno
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
from tqdm import tqdm

from monolith import tracing
from monolith.errors import BadRequest, MonolithError, StorageFull, as_domain_error, is_outage
from monolith.jobs.lines import (
    RequestLine,
    answer_in_background,
    done_custom_ids,
    line_too_large,
    output_line,
    parse_line,
    read_lines,
)
from monolith.protocol.errors import error_response
from monolith.scheduling import BackgroundBudget
from monolith.serving.registry import ENDPOINTS
from monolith.serving.services import Services

log = logging.getLogger(__name__)


@dataclass
class BatchReport:
    total: int = 0
    skipped: int = 0
    succeeded: int = 0
    failed: int = 0
    output_tokens: int = 0
    seconds: float = 0.0

    @property
    def processed(self) -> int:
        return self.succeeded + self.failed

    def summary(self) -> str:
        rate = self.processed / self.seconds if self.seconds else 0.0
        tokens = self.output_tokens / self.seconds if self.seconds else 0.0
        return (
            f"{self.total} lines: {self.succeeded} succeeded, {self.failed} failed, {self.skipped} already done; "
            f"{self.seconds:.1f} s, {rate:.2f} lines/s, {tokens:.1f} output tokens/s"
        )


Item = tuple[str, RequestLine | None, MonolithError | None]  # custom_id, the request or why the line is bad


@dataclass
class BatchPacing:
    """How the HTTP batch runner paces a batch behind real-time traffic; `monolith batch` runs without it.

    `endpoint`: every line must name it (the HTTP Batch API's rule); `budget`: a line starts only when the
    background budget has room (real-time traffic first; overdue once the batch, queued at `queued_at`, waited
    too long), and a line it preempts is answered again later; `on_line(ok)`: called as each line is written."""

    endpoint: str | None = None
    budget: BackgroundBudget | None = None
    queued_at: float = 0.0
    on_line: Callable[[bool], Awaitable[None]] | None = None


class _Lines:
    """One run over a batch file: the lines still to answer, each answered and appended to the output."""

    def __init__(
        self, services: Services, output: BinaryIO, pacing: BatchPacing, report: BatchReport, bar: tqdm
    ) -> None:
        self.services = services
        self.output = output
        self.pacing = pacing
        self.report = report
        self.bar = bar
        self.started = time.perf_counter()

    def pending(self, source: Iterable[tuple[int, bytes]], done: set[str]) -> Iterator[Item]:
        """Each line not answered yet (a repeated custom_id is answered once), checked as the routes check a body."""
        max_bytes = self.services.settings.server.max_body_bytes
        for number, raw in source:
            self.report.total += 1
            custom_id, request, error = parse_line(raw, number)
            too_large = line_too_large(number, raw, max_bytes)
            if too_large is not None:  # the real-time routes' limit, per line
                request, error = None, too_large
            elif request is not None and self.pacing.endpoint and request.url != self.pacing.endpoint:
                message = f"line {number}: url must be this batch's {self.pacing.endpoint}"
                request, error = None, BadRequest(message, param="url")
            if custom_id in done:
                self.report.skipped += 1
                self.bar.update(1)
                continue
            done.add(custom_id)
            yield custom_id, request, error

    async def answer(
        self, request: RequestLine | None, error: MonolithError | None, request_id: str
    ) -> tuple[Any, int]:
        """(body, status) of one line; an outage is raised (the line stays unwritten: the batch's resume answers it)."""
        pacing = self.pacing
        try:
            if error is not None:
                raise error
            assert request is not None
            endpoint = ENDPOINTS[request.url]
            answered = await answer_in_background(
                self.services, pacing.budget, endpoint, request.body, request_id, pacing.queued_at
            )
        except Exception as exc:
            if is_outage(exc):
                raise
            failure = as_domain_error(exc, f"request {request_id}")
            self.report.failed += 1
            return msgspec.to_builtins(error_response(failure)), failure.status_code
        result = msgspec.to_builtins(answered)
        self.report.succeeded += 1
        used = result.get("usage") or {}
        self.report.output_tokens += used.get("completion_tokens", used.get("output_tokens", 0))
        return result, 200

    async def write(self, custom_id: str, status: int, result: Any, request_id: str) -> None:
        try:
            self.output.write(output_line(custom_id, status, result, request_id))
            self.output.flush()
        except OSError as exc:  # a full disk stops the batch (resumed later); a torn line is dropped then
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull("the server's file storage is full") from None
            raise
        if self.pacing.on_line is not None:
            await self.pacing.on_line(status == 200)  # written lines survive a kill: the resume skips them
        self.bar.update(1)
        rate = self.report.output_tokens / (time.perf_counter() - self.started)
        self.bar.set_postfix(tok_s=f"{rate:.1f}", refresh=False)


async def _in_flight(
    items: Iterator[Item], run: Callable[[Item, asyncio.Semaphore], Awaitable[None]], most: int
) -> None:
    """Runs `run(item, slots)` for each item, at most `most` at once (`run` releases its slot once answered, before
    it writes); the first failure stops the rest, which the batch's resume answers."""
    slots = asyncio.Semaphore(most)
    running: set[asyncio.Task] = set()
    failures: list[BaseException] = []

    def finished(task: asyncio.Task) -> None:
        running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            failures.append(task.exception())

    try:
        for item in items:
            if failures:
                break
            await slots.acquire()
            task = asyncio.create_task(run(item, slots))
            running.add(task)
            task.add_done_callback(finished)
        while running and not failures:
            await asyncio.wait(set(running), return_when=asyncio.FIRST_COMPLETED)
        if failures:
            raise failures[0]
    finally:
        # Stopped (a cancel, the shutdown): lines in flight stop too, and are answered by the resume.
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)


async def run_batch(
    services: Services,
    source: Path | Iterable[tuple[int, bytes]],
    output_path: Path,
    max_in_flight: int,
    progress: bool = True,
    pacing: BatchPacing | None = None,
    total: int | None = None,
) -> BatchReport:
    """Hands the engine up to `max_in_flight` requests at once; lines are written as they finish, and the lines
    the output already holds are skipped (a resume). `source`: a batch file, or its (line number, line) pairs (a
    shard's); `total`: the input's line count when the caller has it."""
    report = BatchReport()
    done = done_custom_ids(output_path)
    if isinstance(source, Path):
        if total is None:
            total = sum(1 for _ in read_lines(source))
        source = read_lines(source)
    started = time.perf_counter()
    bar = tqdm(total=total, desc="batch", unit="line", disable=not progress)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with output_path.open("ab") as out:
        lines = _Lines(services, out, pacing or BatchPacing(), report, bar)

        async def one(item: Item, slots: asyncio.Semaphore) -> None:
            custom_id, request, error = item
            request_id = f"batch-{uuid.uuid4().hex}"
            try:
                with tracing.step(
                    "batch.line", {"monolith.batch.custom_id": custom_id, "monolith.request_id": request_id}
                ):
                    result, status = await lines.answer(request, error, request_id)
            finally:
                slots.release()
            await lines.write(custom_id, status, result, request_id)

        await _in_flight(lines.pending(source, done), one, max_in_flight)
    bar.close()
    report.seconds = time.perf_counter() - started
    return report
