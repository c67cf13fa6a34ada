"""OpenAI-compatible files and batches, so `client.files.create` and `client.batches.create` work."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, get, post
from litestar.datastructures import UploadFile
from litestar.di import Provide
from litestar.enums import RequestEncodingType
from litestar.params import Body, Parameter
from litestar.response import File

from monolith.api.deps import provide_batches
from monolith.batch import ROUTES
from monolith.errors import BadRequest, NotFound
from monolith.jobs.batches import BatchRunner
from monolith.store.batches import BatchRecord, FileRecord

# Batch input files are far larger than a request body (server.max_body_bytes).
MAX_FILE_BYTES = 200_000_000


@dataclass
class FileUpload:
    file: UploadFile
    purpose: str


@dataclass
class BatchCreate:
    input_file_id: str
    endpoint: str
    completion_window: str = "24h"
    metadata: dict[str, str] | None = None


async def file_or_404(runner: BatchRunner, file_id: str) -> FileRecord:
    record = await runner.store.get_file(file_id)
    if record is None:
        raise NotFound(f"no file {file_id}", param="file_id")
    return record


async def batch_or_404(runner: BatchRunner, batch_id: str) -> BatchRecord:
    batch = await runner.store.get_batch(batch_id)
    if batch is None:
        raise NotFound(f"no batch {batch_id}", param="batch_id")
    return batch


class BatchesController(Controller):
    path = "/v1"
    dependencies = {"runner": Provide(provide_batches, sync_to_thread=False)}
    tags = ["batch"]

    @post("/files", status_code=200, request_max_body_size=MAX_FILE_BYTES, summary="Upload a batch input file")
    async def upload(
        self, data: Annotated[FileUpload, Body(media_type=RequestEncodingType.MULTI_PART)], runner: BatchRunner
    ) -> dict[str, Any]:
        if data.purpose != "batch":
            raise BadRequest("purpose must be 'batch'", param="purpose")
        content = await data.file.read()
        if not content.strip():
            raise BadRequest("the file is empty", param="file")
        return (await runner.store.add_file(data.file.filename or "upload.jsonl", data.purpose, content)).to_wire()

    @get("/files/{file_id:str}", summary="A file's metadata")
    async def file_info(self, file_id: str, runner: BatchRunner) -> dict[str, Any]:
        return (await file_or_404(runner, file_id)).to_wire()

    @get("/files/{file_id:str}/content", summary="A file's content (JSONL)")
    async def file_content(self, file_id: str, runner: BatchRunner) -> File:
        await file_or_404(runner, file_id)
        return File(runner.store.path_of(file_id), media_type="application/jsonl", content_disposition_type="inline")

    @post("/batches", status_code=200, summary="Run an uploaded file of requests as a batch")
    async def create(self, data: BatchCreate, runner: BatchRunner) -> dict[str, Any]:
        if data.endpoint not in ROUTES:
            raise BadRequest(f"endpoint must be one of {', '.join(ROUTES)}", param="endpoint")
        if data.completion_window != "24h":
            raise BadRequest("completion_window must be '24h'", param="completion_window")
        source = await runner.store.get_file(data.input_file_id)
        if source is None or source.purpose != "batch":
            raise NotFound(f"no batch input file {data.input_file_id}", param="input_file_id")
        metadata = json.dumps(data.metadata) if data.metadata else None
        batch = await runner.store.create_batch(data.endpoint, data.input_file_id, data.completion_window, metadata)
        runner.wake()
        return batch.to_wire()

    @get("/batches/{batch_id:str}", summary="A batch's status and request counts")
    async def retrieve(self, batch_id: str, runner: BatchRunner) -> dict[str, Any]:
        return (await batch_or_404(runner, batch_id)).to_wire()

    @post("/batches/{batch_id:str}/cancel", status_code=200, summary="Cancel a batch; finished lines are kept")
    async def cancel(self, batch_id: str, runner: BatchRunner) -> dict[str, Any]:
        await batch_or_404(runner, batch_id)
        await runner.cancel(batch_id)
        return (await batch_or_404(runner, batch_id)).to_wire()

    @get("/batches", summary="Batches, oldest first")
    async def list_batches(
        self, runner: BatchRunner, limit: Annotated[int, Parameter(ge=1, le=100)] = 20, after: str | None = None
    ) -> dict[str, Any]:
        batches, has_more = await runner.store.list_batches(limit, after)
        data = [b.to_wire() for b in batches]
        return {
            "object": "list",
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
