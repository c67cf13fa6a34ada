"""Offline batch transform: OpenAI Batch API request lines in, output lines out; resumable, many in flight."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
from tqdm import tqdm

from monolith.admission import LANE
from monolith.config import Settings
from monolith.embeddings import embeddings
from monolith.errors import BadRequest, MonolithError
from monolith.protocol.chat import ChatCompletionRequest
from monolith.protocol.completions import CompletionRequest
from monolith.protocol.embeddings import EmbeddingRequest
from monolith.protocol.errors import field_of
from monolith.protocol.rag import RagRequest
from monolith.protocol.responses import ResponsesRequest
from monolith.serving import (
    Services,
    model_names,
    plan_chat,
    plan_completion,
    plan_rag,
    run_chat,
    run_completion,
    run_rag,
)
from monolith.serving.responses import plan_response, run_response
from monolith.store.files import write_atomically

log = logging.getLogger(__name__)

# The routes a batch line may name (OpenAI's `url`, a batch's `endpoint`).
BatchEndpoint = Literal["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings", "/rag"]
ROUTES: dict[str, type] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/completions": CompletionRequest,
    "/v1/responses": ResponsesRequest,
    "/v1/embeddings": EmbeddingRequest,
    "/rag": RagRequest,
}
# Lines of these routes need the embedder (and for RAG the store) loaded.
RETRIEVAL_ROUTES = ("/rag", "/v1/embeddings")


class RequestLine(msgspec.Struct):
    custom_id: str
    url: str
    body: dict[str, Any]
    method: str = "POST"


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


def written(output: Path) -> dict[str, bool]:
    """custom_id -> whether it succeeded, for the lines already answered. A torn last line (the process was
    killed mid-write) is dropped from the file, which is replaced whole so that a kill now loses nothing."""
    if not output.exists():
        return {}
    done: dict[str, bool] = {}
    keep: list[bytes] = []
    torn = False
    for line in output.read_bytes().splitlines(keepends=True):
        try:
            parsed = json.loads(line)
            done[parsed["custom_id"]] = parsed["response"]["status_code"] == 200
            keep.append(line if line.endswith(b"\n") else line + b"\n")
            torn = torn or not line.endswith(b"\n")
        except (ValueError, KeyError, TypeError):
            log.warning("dropping a torn line from %s", output)
            torn = True
    if torn:
        write_atomically(output, b"".join(keep))
    return done


def done_custom_ids(output: Path) -> set[str]:
    return set(written(output))


def output_line(custom_id: str, status: int, body: Any, request_id: str) -> bytes:
    error = None
    if status >= 400:
        error = {"code": body["error"]["type"], "message": body["error"]["message"]}
    line = {
        "id": f"batch_req_{uuid.uuid4().hex}",
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": request_id, "body": body},
        "error": error,
    }
    return msgspec.json.encode(line) + b"\n"


def error_body(exc: MonolithError) -> dict[str, Any]:
    return {"error": {"message": exc.message, "type": exc.error_type, "param": exc.param}}


def parse_line(raw: bytes, number: int) -> tuple[str, RequestLine | None, MonolithError | None]:
    """(custom_id, request, error): a bad line keeps its custom_id when it has one, else `line-N`."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested deeper than Python recurses
        return f"line-{number}", None, BadRequest(f"line {number} is not JSON: {type(exc).__name__}")
    custom_id = obj.get("custom_id") if isinstance(obj, dict) else None
    custom_id = custom_id if isinstance(custom_id, str) and custom_id else f"line-{number}"
    try:
        request = msgspec.convert(obj, RequestLine)
    except msgspec.ValidationError as exc:
        return custom_id, None, BadRequest(f"line {number}: {exc}")
    if request.method != "POST":
        return custom_id, None, BadRequest(f"line {number}: method must be POST", param="method")
    if request.url not in ROUTES:
        return custom_id, None, BadRequest(f"line {number}: url must be one of {', '.join(ROUTES)}", param="url")
    return custom_id, request, None


class LineChecker:
    """Checks an uploaded batch file line by line, the way the runner will read it: each line one request
    of a known route, no larger than a request body may be, its custom_id used once."""

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self.seen: dict[str, int] = {}

    def __call__(self, number: int, raw: bytes) -> None:
        if len(raw) > self.max_line_bytes:
            limit = self.max_line_bytes
            raise BadRequest(f"line {number} has more than {limit} bytes (server.max_body_bytes)", param="file")
        if not raw.strip():
            return
        custom_id, _, error = parse_line(raw, number)
        if error is not None:
            message = error.message if error.message.startswith("line") else f"line {number}: {error.message}"
            raise BadRequest(message, param="file")
        if custom_id in self.seen:
            first = self.seen[custom_id]
            raise BadRequest(f"line {number}: custom_id {custom_id!r} is already used on line {first}", param="file")
        self.seen[custom_id] = number


async def answer(services: Services, request: RequestLine, request_id: str) -> Any:
    try:
        body = msgspec.convert(request.body, ROUTES[request.url])
    except msgspec.ValidationError as exc:
        raise BadRequest(f"body: {exc}", param=field_of(str(exc))) from None
    if getattr(body, "stream", False):
        raise BadRequest("batch requests cannot stream", param="stream")
    if request.url == "/rag":
        return await run_rag(services, plan_rag(services, body), request_id)
    if request.url == "/v1/embeddings":
        return await embeddings(services, body)
    off_loop = services.generator.off_loop
    if request.url == "/v1/completions":
        return await run_completion(services, await off_loop(plan_completion, services, body), request_id)
    if request.url == "/v1/responses":
        return await run_response(services, await off_loop(plan_response, services, body, f"resp_{request_id}"))
    return await run_chat(services, await off_loop(plan_chat, services, body), request_id)


def needs_retrieval(path: Path, settings: Settings) -> bool:
    """Whether any line needs retrieval loaded: /rag or /v1/embeddings, the RAG model name, or a `rag` field
    (plan_chat's rule); a line too broken to parse is answered with its error and asks for nothing."""
    rag_model = model_names(settings)[1]
    for number, raw in read_lines(path):
        _, request, _ = parse_line(raw, number)
        if request is not None and (
            request.url in RETRIEVAL_ROUTES or request.body.get("rag") or request.body.get("model") == rag_model
        ):
            return True
    return False


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if raw.strip():
                yield number, raw


async def run_batch(
    services: Services,
    input_path: Path,
    output_path: Path,
    max_in_flight: int,
    progress: bool = True,
    endpoint: str | None = None,
    gate: Callable[[], bool] | None = None,
    on_line: Callable[[bool], Awaitable[None]] | None = None,
    total: int | None = None,
) -> BatchReport:
    """Hands the engine up to `max_in_flight` requests at once; lines are written as they finish.

    `endpoint`: every line must name it (the HTTP Batch API's rule); `gate`: new lines start only while it
    holds (real-time traffic first); `on_line(ok)`: called as each line is written; `total`: the input's
    line count when the caller has it already.
    """
    LANE.set("batch")
    report = BatchReport()
    done = done_custom_ids(output_path)
    if total is None:
        total = sum(1 for _ in read_lines(input_path))
    started = time.perf_counter()
    slots = asyncio.Semaphore(max_in_flight)
    running: set[asyncio.Task] = set()
    bar = tqdm(total=total, desc="batch", unit="line", disable=not progress)
    output_path.parent.mkdir(parents=True, exist_ok=True)

    with output_path.open("ab") as out:

        async def one(custom_id: str, request: RequestLine | None, error: MonolithError | None) -> None:
            request_id = f"batch-{uuid.uuid4().hex}"
            try:
                if error is not None:
                    raise error
                assert request is not None
                result, status = msgspec.to_builtins(await answer(services, request, request_id)), 200
                report.succeeded += 1
                used = result.get("usage") or {}
                report.output_tokens += used.get("completion_tokens", used.get("output_tokens", 0))
            except MonolithError as exc:
                result, status = error_body(exc), exc.status_code
                report.failed += 1
            except Exception:
                log.exception("batch line %s failed", custom_id)
                result = {"error": {"message": "internal error", "type": "internal_error", "param": None}}
                status = 500
                report.failed += 1
            finally:
                slots.release()
            out.write(output_line(custom_id, status, result, request_id))
            out.flush()
            if on_line is not None:
                await on_line(status == 200)  # written lines survive the process being killed: the resume skips them
            bar.update(1)
            bar.set_postfix(tok_s=f"{report.output_tokens / (time.perf_counter() - started):.1f}", refresh=False)

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
            while gate is not None and not gate():
                await asyncio.sleep(0.05)
            await slots.acquire()
            task = asyncio.create_task(one(custom_id, request, error))
            running.add(task)
            task.add_done_callback(running.discard)
        await asyncio.gather(*running)
    bar.close()
    report.seconds = time.perf_counter() - started
    return report
