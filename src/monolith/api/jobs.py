"""Asynchronous inference: submit (202 + id), poll, list, cancel. Jobs live in the shared store (SQLite on one
host, PostgreSQL for many replicas): any replica answers for any job."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlparse

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.di import Provide
from litestar.params import Parameter

from monolith.api.deps import provide_jobs, provide_services
from monolith.api.schemas import ChatCompletionRequest, RagRequest
from monolith.errors import BadRequest, NotFound
from monolith.jobs.kinds import validate
from monolith.jobs.worker import JobRunner
from monolith.serving import Services
from monolith.store.jobs import STATUSES, Job

IdempotencyKey = Annotated[str | None, Parameter(header="Idempotency-Key", required=False, max_length=255)]
CallbackUrl = Annotated[str | None, Parameter(query="callback_url", required=False, max_length=2048)]


def status_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def render(job: Job) -> bytes:
    return msgspec.json.encode(job.to_wire(status_url(job.id)))


def check_callback_url(url: str | None) -> str | None:
    if url is None:
        return None
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise BadRequest("callback_url must be an absolute http(s) URL", param="callback_url")
    return url


async def accepted(
    runner: JobRunner, kind: str, services: Services, body: Any, callback_url: str | None, key: str | None
) -> Response[dict[str, Any]]:
    request = validate(services, kind, body)
    job, _ = await runner.store.submit(kind, request, check_callback_url(callback_url), key)
    runner.wake()
    url = status_url(job.id)
    return Response(
        {"id": job.id, "object": "job", "status": job.status, "status_url": url},
        status_code=202,
        headers={"Location": url},
    )


class JobsController(Controller):
    path = "/v1"
    dependencies = {
        "services": Provide(provide_services, sync_to_thread=False),
        "runner": Provide(provide_jobs, sync_to_thread=False),
    }
    tags = ["async"]

    @post("/async/rag", status_code=202, summary="Queue a /rag request; 202 with the job id at once")
    async def submit_rag(
        self,
        data: RagRequest,
        services: Services,
        runner: JobRunner,
        callback_url: CallbackUrl = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[dict[str, Any]]:
        return await accepted(runner, "rag", services, data, callback_url, idempotency_key)

    @post("/async/chat/completions", status_code=202, summary="Queue a chat completion; 202 with the job id")
    async def submit_chat(
        self,
        data: ChatCompletionRequest,
        services: Services,
        runner: JobRunner,
        callback_url: CallbackUrl = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[dict[str, Any]]:
        return await accepted(runner, "chat", services, data, callback_url, idempotency_key)

    @get("/jobs/{job_id:str}", summary="A job's status, timestamps, and its result or error when done")
    async def get_job(self, job_id: str, runner: JobRunner) -> Response[bytes]:
        job = await runner.store.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id} (finished jobs are deleted after their retention time)", param="job_id")
        return Response(render(job), media_type="application/json")

    @delete("/jobs/{job_id:str}", status_code=200, summary="Cancel a queued or running job")
    async def cancel_job(self, job_id: str, runner: JobRunner) -> Response[bytes]:
        if await runner.store.get(job_id) is None:
            raise NotFound(f"no job {job_id}", param="job_id")
        await runner.cancel(job_id)
        job = await runner.store.get(job_id)
        assert job is not None
        return Response(render(job), media_type="application/json")

    @get("/jobs", summary="Jobs, oldest first; filter by status, page with `after`")
    async def list_jobs(
        self,
        runner: JobRunner,
        status: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        after: str | None = None,
    ) -> dict[str, Any]:
        if status is not None and status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}", param="status")
        jobs, has_more = await runner.store.list(status, limit, after)
        data = [job.to_wire(status_url(job.id)) for job in jobs]
        return {"object": "list", "data": data, "has_more": has_more, "last_id": jobs[-1].id if jobs else None}
