"""Asynchronous inference: submit (202 + id), poll, list, cancel. Jobs live in the shared store (SQLite on one
host, PostgreSQL for many replicas): any replica answers for any job."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.di import Provide
from litestar.params import Parameter

from monolith.api.deps import provide_jobs, provide_owner, provide_services
from monolith.api.openapi import SERVED, errors
from monolith.errors import NotFound, QuotaExceeded
from monolith.jobs.destinations import shown
from monolith.jobs.kinds import validate
from monolith.jobs.worker import JobRunner
from monolith.protocol.chat import ChatCompletionRequest
from monolith.protocol.rag import RagRequest
from monolith.serving import Services
from monolith.store.jobs import Job, JobStatus

IdempotencyKey = Annotated[
    str | None, Parameter(header="Idempotency-Key", required=False, min_length=1, max_length=255)
]
CallbackUrl = Annotated[
    str | None, Parameter(query="callback_url", required=False, max_length=2048, pattern=r"^https?://[^\s/?#]+")
]


def status_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def job_body(job: Job) -> dict[str, Any]:
    """A job as the API shows it: its callback URL without credentials, path or query."""
    body = job.to_wire(status_url(job.id))
    if "callback" in body:
        body["callback"]["url"] = shown(job.callback_url or "")
    return body


def render(job: Job) -> bytes:
    return msgspec.json.encode(job_body(job))


async def accepted(
    runner: JobRunner,
    kind: str,
    services: Services,
    body: Any,
    callback_url: str | None,
    key: str | None,
    owner: str,
) -> Response[dict[str, Any]]:
    request = await validate(services, kind, body)
    limit = services.settings.jobs.max_unfinished_per_owner
    if await runner.store.unfinished(owner) >= limit:
        raise QuotaExceeded(f"this key has {limit} jobs queued or running (the limit); wait for some to finish")
    if callback_url is not None:
        await runner.callbacks.policy.check(callback_url)
    job, _ = await runner.store.submit(kind, request, callback_url, key, owner)
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
        "owner": Provide(provide_owner, sync_to_thread=False),
    }
    tags = ["async"]

    @post(
        "/async/rag",
        status_code=202,
        summary="Queue a /rag request; 202 with the job id at once",
        responses=errors(*SERVED, 409, 413, 429),
    )
    async def submit_rag(
        self,
        data: RagRequest,
        services: Services,
        runner: JobRunner,
        owner: str,
        callback_url: CallbackUrl = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[dict[str, Any]]:
        return await accepted(runner, "rag", services, data, callback_url, idempotency_key, owner)

    @post(
        "/async/chat/completions",
        status_code=202,
        summary="Queue a chat completion; 202 with the job id",
        responses=errors(*SERVED, 404, 409, 413, 429),
    )
    async def submit_chat(
        self,
        data: ChatCompletionRequest,
        services: Services,
        runner: JobRunner,
        owner: str,
        callback_url: CallbackUrl = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[dict[str, Any]]:
        return await accepted(runner, "chat", services, data, callback_url, idempotency_key, owner)

    @get(
        "/jobs/{job_id:str}",
        summary="A job's status, timestamps, and its result or error when done",
        responses=errors(*SERVED, 404),
    )
    async def get_job(self, job_id: str, runner: JobRunner, owner: str) -> Response[bytes]:
        job = await runner.store.get(job_id, owner)
        if job is None:
            raise NotFound(f"no job {job_id} (finished jobs are deleted after their retention time)", param="job_id")
        return Response(render(job), media_type="application/json")

    @delete(
        "/jobs/{job_id:str}", status_code=200, summary="Cancel a queued or running job", responses=errors(*SERVED, 404)
    )
    async def cancel_job(self, job_id: str, runner: JobRunner, owner: str) -> Response[bytes]:
        if await runner.store.get(job_id, owner) is None:
            raise NotFound(f"no job {job_id}", param="job_id")
        await runner.cancel(job_id)
        job = await runner.store.get(job_id, owner)
        assert job is not None
        return Response(render(job), media_type="application/json")

    @get("/jobs", summary="Jobs, oldest first; filter by status, page with `after`", responses=errors(*SERVED))
    async def list_jobs(
        self,
        runner: JobRunner,
        owner: str,
        status: JobStatus | None = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        after: str | None = None,
    ) -> dict[str, Any]:
        jobs, has_more = await runner.store.list(status, limit, after, owner)
        data = [job_body(job) for job in jobs]
        return {"object": "list", "data": data, "has_more": has_more, "last_id": jobs[-1].id if jobs else None}
