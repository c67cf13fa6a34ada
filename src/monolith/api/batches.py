"""OpenAI-compatible batches (`client.batches.*`) over uploaded files (api.files)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from litestar import Controller, get, post
from litestar.di import Provide
from litestar.params import Parameter

from monolith.api.deps import provide_batches, provide_owner
from monolith.api.openapi import SERVED, errors
from monolith.batch import BatchEndpoint
from monolith.errors import NotFound
from monolith.jobs.batches import BatchRunner
from monolith.store.batches import BatchRecord


@dataclass
class BatchCreate:
    input_file_id: str
    endpoint: BatchEndpoint
    completion_window: Literal["24h"] = "24h"
    metadata: dict[str, str] | None = None


async def batch_or_404(runner: BatchRunner, batch_id: str, owner: str) -> BatchRecord:
    batch = await runner.store.get_batch(batch_id, owner)
    if batch is None:
        raise NotFound(f"no batch {batch_id}", param="batch_id")
    return batch


class BatchesController(Controller):
    path = "/v1"
    dependencies = {
        "runner": Provide(provide_batches, sync_to_thread=False),
        "owner": Provide(provide_owner, sync_to_thread=False),
    }
    tags = ["batch"]

    @post(
        "/batches",
        status_code=200,
        summary="Run an uploaded file of requests as a batch",
        responses=errors(*SERVED, 404, 413, 429),
    )
    async def create(self, data: BatchCreate, runner: BatchRunner, owner: str) -> dict[str, Any]:
        source = await runner.store.get_file(data.input_file_id, owner)
        if source is None or source.purpose != "batch":
            raise NotFound(f"no batch input file {data.input_file_id}", param="input_file_id")
        metadata = json.dumps(data.metadata) if data.metadata else None
        batch = await runner.store.create_batch(
            data.endpoint, data.input_file_id, data.completion_window, metadata, owner
        )
        runner.wake()
        return batch.to_wire()

    @get("/batches/{batch_id:str}", summary="A batch's status and request counts", responses=errors(*SERVED, 404))
    async def retrieve(self, batch_id: str, runner: BatchRunner, owner: str) -> dict[str, Any]:
        return (await batch_or_404(runner, batch_id, owner)).to_wire()

    @post(
        "/batches/{batch_id:str}/cancel",
        status_code=200,
        summary="Cancel a batch; finished lines are kept",
        responses=errors(*SERVED, 404),
    )
    async def cancel(self, batch_id: str, runner: BatchRunner, owner: str) -> dict[str, Any]:
        await batch_or_404(runner, batch_id, owner)
        await runner.cancel(batch_id)
        return (await batch_or_404(runner, batch_id, owner)).to_wire()

    @get("/batches", summary="Batches, oldest first", responses=errors(*SERVED))
    async def list_batches(
        self,
        runner: BatchRunner,
        owner: str,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        after: str | None = None,
    ) -> dict[str, Any]:
        batches, has_more = await runner.store.list_batches(limit, after, owner)
        data = [b.to_wire() for b in batches]
        return {
            "object": "list",
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
