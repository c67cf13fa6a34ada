"""Batch lines, OpenAI's Batch API format: a request line read and checked, answered through the endpoint registry,
and written as an output line; the lines an output already holds (what a resume skips)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from monolith.admission import BATCH
from monolith.config import Settings
from monolith.errors import BadRequest, MonolithError
from monolith.scheduling import BackgroundBudget
from monolith.serving.registry import ENDPOINTS, Endpoint, answer_of
from monolith.serving.services import Services
from monolith.store.atomic import write_atomically
from monolith.work import Work

log = logging.getLogger(__name__)


class RequestLine(msgspec.Struct):
    custom_id: str
    url: str
    body: dict[str, Any]
    method: str = "POST"


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
    """OpenAI's output line; a failed request's body is the error body, and `error` says it again in short."""
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
    if request.url not in ENDPOINTS:
        return custom_id, None, BadRequest(f"line {number}: url must be one of {', '.join(ENDPOINTS)}", param="url")
    return custom_id, request, None


def line_too_large(number: int, raw: bytes, max_line_bytes: int) -> BadRequest | None:
    """A line larger than a request body may be (the real-time routes' limit, per line), as the error it gets."""
    if len(raw) <= max_line_bytes:
        return None
    return BadRequest(f"line {number} has more than {max_line_bytes} bytes (server.max_body_bytes)")


class LineChecker:
    """Checks an uploaded batch file line by line, the way the runner will read it: each line one request
    of a known route, no larger than a request body may be, its custom_id used once."""

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self.seen: dict[str, int] = {}

    def __call__(self, number: int, raw: bytes) -> None:
        too_large = line_too_large(number, raw, self.max_line_bytes)
        if too_large is not None:
            too_large.param = "file"
            raise too_large
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

    def finish(self) -> None:
        """After the last line: a file of blank lines holds no request, which a batch could not run."""
        if not self.seen:
            raise BadRequest("the file has no request line (every line is blank)", param="file")


async def answer_in_background(
    services: Services,
    budget: BackgroundBudget | None,
    endpoint: Endpoint,
    data: Any,
    request_id: str,
    queued_at: float,
) -> Any:
    """One request answered as batch work (a batch line, a SageMaker batch transform record): it starts when the
    background budget has room (`queued_at` tells when it is overdue), and when real-time traffic preempts it, its
    generation pauses and resumes from its tokens (monolith.resume) or, where it cannot, it starts again from the
    beginning. With no budget (`monolith batch`, no job store) it starts at once."""
    why = "batch requests cannot stream"
    if budget is None:
        return await answer_of(services, endpoint, data, request_id, Work(BATCH), why)
    while True:
        held = await budget.acquire(BATCH, queued_at)
        # Its generation holds the slot: it can pause and resume from its tokens (monolith.resume).
        attempt = asyncio.create_task(answer_of(services, endpoint, data, request_id, Work(BATCH, (), held), why))
        held.task = attempt
        try:
            await asyncio.wait({attempt})
        finally:
            budget.release(held)
            if not attempt.done():  # this request itself was cancelled (its client left)
                attempt.cancel()
        if attempt.cancelled() and held.preempted:
            continue
        return attempt.result()


def needs_retrieval(path: Path, settings: Settings) -> bool:
    """Whether any line needs retrieval loaded (its endpoint's rule: /rag, /v1/embeddings, a chat that asks for
    RAG); a line too broken to parse is answered with its error and asks for nothing."""
    for number, raw in read_lines(path):
        _, request, _ = parse_line(raw, number)
        if request is not None and ENDPOINTS[request.url].needs_retrieval(settings, request.body):
            return True
    return False


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if raw.strip():
                yield number, raw
