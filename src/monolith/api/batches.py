"""OpenAI-compatible batches (`client.batches.*`) over uploaded files (api.files)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import msgspec
from litestar import Controller, get, post
from litestar.params import Parameter

from monolith.api.openapi import SERVED, errors
from monolith.errors import NotFound
from monolith.jobs.batches import BatchRunner
from monolith.jobs.wire import batch_object
from monolith.protocol.batches import BatchList, BatchObject
from monolith.protocol.common import Metadata, ObjectId
from monolith.serving.registry import BatchEndpoint
from monolith.store.batches import BatchRecord
from monolith.store.files import FileStore
from monolith.tracing import current_traceparent


# A msgspec Struct, not a dataclass: the served schema is then msgspec's own (api/openapi.py), with every bound.
class BatchCreate(msgspec.Struct):
    input_file_id: ObjectId
    endpoint: BatchEndpoint
    completion_window: Literal["24h"] = "24h"
    metadata: Metadata | None = None


async def batch_or_404(batches: BatchRunner, batch_id: str, owner: str) -> BatchRecord:
    batch = await batches.store.get_batch(batch_id, owner)
    if batch is None:
        raise NotFound(f"no batch {batch_id}", param="batch_id")
    return batch


class BatchesController(Controller):
    path = "/v1"
    tags = ["batch"]

    @post(
        "/batches",
        status_code=200,
        summary="Run an uploaded file of requests as a batch",
        responses=errors(*SERVED, 404, 413, 429),
    )
    async def create(self, data: BatchCreate, batches: BatchRunner, files: FileStore, owner: str) -> BatchObject:
        source = await files.get_file(data.input_file_id, owner)
        if source is None or source.purpose != "batch":
            raise NotFound(f"no batch input file {data.input_file_id}", param="input_file_id")
        metadata = json.dumps(data.metadata) if data.metadata else None
        batch = await batches.create(
            data.endpoint, data.input_file_id, data.completion_window, metadata, owner, current_traceparent()
        )
        return batch_object(batch)

    @get("/batches/{batch_id:str}", summary="A batch's status and request counts", responses=errors(*SERVED, 404))
    async def retrieve(self, batch_id: str, batches: BatchRunner, owner: str) -> BatchObject:
        return batch_object(await batch_or_404(batches, batch_id, owner))

    @post(
        "/batches/{batch_id:str}/cancel",
        status_code=200,
        summary="Cancel a batch; finished lines are kept",
        responses=errors(*SERVED, 404),
    )
    async def cancel(self, batch_id: str, batches: BatchRunner, owner: str) -> BatchObject:
        await batch_or_404(batches, batch_id, owner)
        await batches.cancel(batch_id)
        return batch_object(await batch_or_404(batches, batch_id, owner))

    @get("/batches", summary="Batches, oldest first", responses=errors(*SERVED))
    async def list_batches(
        self,
        batches: BatchRunner,
        owner: str,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        after: str | None = None,
    ) -> BatchList:
        records, has_more = await batches.store.list_batches(limit, after, owner)
        data = [batch_object(b) for b in records]
        return BatchList(data, has_more, data[0].id if data else None, data[-1].id if data else None)
