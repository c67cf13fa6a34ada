"""Offline batch transform: a file of request lines in, a file of output lines out; resumable, many in flight.
`monolith batch` runs it with a progress bar, the HTTP batch runner (jobs.batches) behind real-time traffic."""

from __future__ import annotations

import asyncio
import errno
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
from tqdm import tqdm

from monolith.errors import BadRequest, InternalError, MonolithError, StorageFull, is_outage
from monolith.jobs.lines import RequestLine, answer_in_background, done_custom_ids, output_line, parse_line, read_lines
from monolith.protocol.errors import error_response
from monolith.scheduling import BackgroundBudget
from monolith.serving.common import Services
from monolith.serving.registry import ENDPOINTS

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


async def run_batch(
    services: Services,
    input_path: Path,
    output_path: Path,
    max_in_flight: int,
    progress: bool = True,
    endpoint: str | None = None,
    budget: BackgroundBudget | None = None,
    queued_at: float = 0.0,
    on_line: Callable[[bool], Awaitable[None]] | None = None,
    total: int | None = None,
) -> BatchReport:
    """Hands the engine up to `max_in_flight` requests at once; lines are written as they finish.

    `endpoint`: every line must name it (the HTTP Batch API's rule); `budget`: a line starts only when the
    background budget has room (real-time traffic first; overdue once the batch, queued at `queued_at`, waited
    too long), and a line it preempts is answered again later; `on_line(ok)`: called as each line is written;
    `total`: the input's line count when the caller has it already.
    """
    report = BatchReport()
    done = done_custom_ids(output_path)
    if total is None:
        total = sum(1 for _ in read_lines(input_path))
    started = time.perf_counter()
    slots = asyncio.Semaphore(max_in_flight)
    running: set[asyncio.Task] = set()
    failures: list[BaseException] = []  # a line that could not be written or counted stops the batch
    bar = tqdm(total=total, desc="batch", unit="line", disable=not progress)
    output_path.parent.mkdir(parents=True, exist_ok=True)

    def new_lines() -> Iterator[Item]:
        for number, raw in read_lines(input_path):
            report.total += 1
            custom_id, request, error = parse_line(raw, number)
            if len(raw) > services.settings.server.max_body_bytes:  # the real-time routes' limit, per line
                limit = services.settings.server.max_body_bytes
                request, error = None, BadRequest(f"line {number} has more than {limit} bytes (server.max_body_bytes)")
            elif request is not None and endpoint and request.url != endpoint:
                request, error = None, BadRequest(f"line {number}: url must be this batch's {endpoint}", param="url")
            if custom_id in done:
                report.skipped += 1
                bar.update(1)
                continue
            done.add(custom_id)  # a repeated custom_id in the input is answered once
            yield custom_id, request, error

    with output_path.open("ab") as out:

        async def one(item: Item) -> None:
            custom_id, request, error = item
            request_id = f"batch-{uuid.uuid4().hex}"
            try:
                if error is not None:
                    raise error
                assert request is not None
                endpoint = ENDPOINTS[request.url]
                answered = await answer_in_background(services, budget, endpoint, request.body, request_id, queued_at)
                result, status = msgspec.to_builtins(answered), 200
                report.succeeded += 1
                used = result.get("usage") or {}
                report.output_tokens += used.get("completion_tokens", used.get("output_tokens", 0))
            except Exception as exc:
                if is_outage(exc):  # not the line's fault: unwritten, so the batch's resume answers it
                    raise
                if not isinstance(exc, MonolithError):
                    log.exception("batch line %s failed", custom_id)
                    exc = InternalError(f"internal error (request {request_id})")
                result, status = msgspec.to_builtins(error_response(exc)), exc.status_code
                report.failed += 1
            finally:
                slots.release()
            try:
                out.write(output_line(custom_id, status, result, request_id))
                out.flush()
            except OSError as exc:  # a full disk stops the batch (resumed later); a torn line is dropped then
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise StorageFull("the server's file storage is full") from None
                raise
            if on_line is not None:
                await on_line(status == 200)  # written lines survive the process being killed: the resume skips them
            bar.update(1)
            bar.set_postfix(tok_s=f"{report.output_tokens / (time.perf_counter() - started):.1f}", refresh=False)

        def finished(task: asyncio.Task) -> None:
            running.discard(task)
            if not task.cancelled() and task.exception() is not None:
                failures.append(task.exception())

        try:
            for item in new_lines():
                if failures:
                    break
                await slots.acquire()
                task = asyncio.create_task(one(item))
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
    bar.close()
    report.seconds = time.perf_counter() - started
    return report
