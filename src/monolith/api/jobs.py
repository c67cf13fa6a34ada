"""Asynchronous inference: submit (202 + id), poll, list, cancel. One submit route per entry of the endpoint
registry (`/v1/async/rag`, `/v1/async/chat/completions`, ...), with the same checks as its real-time route.
Jobs live in the shared store (SQLite on one host, PostgreSQL for many replicas): any replica answers for any
job."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.params import Parameter

from monolith.api.openapi import SERVED, errors
from monolith.errors import NotFound, QuotaExceeded
from monolith.jobs.wire import job_object, status_url
from monolith.jobs.worker import JobRunner
from monolith.protocol.jobs import JobAccepted, JobList, JobObject
from monolith.serving.registry import ENDPOINTS, Endpoint, refuse_stream
from monolith.serving.services import Services
from monolith.store.jobs import JobStatus
from monolith.tracing import current_traceparent

IdempotencyKey = Annotated[
    str | None, Parameter(header="Idempotency-Key", required=False, min_length=1, max_length=255)
]
CallbackUrl = Annotated[
    str | None, Parameter(query="callback_url", required=False, max_length=2048, pattern=r"^https?://[^\s/?#]+")
]


async def accepted(
    runner: JobRunner,
    endpoint: Endpoint,
    services: Services,
    data: Any,
    callback_url: str | None,
    key: str | None,
    owner: str,
) -> Response[JobAccepted]:
    """Every check the real-time route makes, at submit time; then the job is queued."""
    refuse_stream(data, "an async job cannot stream; poll the job or give a callback_url")
    await endpoint.plan(services, data, "submit")
    limit = services.settings.jobs.max_unfinished_per_owner
    if await runner.store.unfinished(owner) >= limit:
        raise QuotaExceeded(f"this key has {limit} jobs queued or running (the limit); wait for some to finish")
    if callback_url is not None:
        await runner.callbacks.policy.check(callback_url)
    request = msgspec.json.encode(data)
    job, _ = await runner.store.submit(endpoint.kind, request, callback_url, key, owner, current_traceparent())
    runner.wake()
    url = status_url(job.id)
    return Response(JobAccepted(job.id, job.status, url), status_code=202, headers={"Location": url})


def submit_handler(endpoint: Endpoint) -> Any:
    """The async twin of a registry entry: its request type as the body, 202 with the job id at once."""

    async def submit(
        self: Controller,
        data: Any,
        services: Services,
        runner: JobRunner,
        owner: str,
        callback_url: CallbackUrl = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[JobAccepted]:
        return await accepted(runner, endpoint, services, data, callback_url, idempotency_key, owner)

    submit.__annotations__ = {**submit.__annotations__, "data": endpoint.request}
    submit.__name__ = submit.__qualname__ = f"submit_{endpoint.kind}"
    codes = (*SERVED, 404, 409, 413, 429)  # 404: an unknown model (a twin's name on every route, /rag's too)
    summary = f"Queue a {endpoint.path} request; 202 with the job id at once"
    return post(
        endpoint.async_path.removeprefix(JobsController.path),
        status_code=202,
        summary=summary,
        responses=errors(*codes),
    )(submit)


class JobsController(Controller):
    path = "/v1"
    tags = ["async"]

    @get(
        "/jobs/{job_id:str}",
        summary="A job's status, timestamps, and its result or error when done",
        responses=errors(*SERVED, 404),
    )
    async def get_job(self, job_id: str, runner: JobRunner, owner: str) -> JobObject:
        job = await runner.store.get(job_id, owner)
        if job is None:
            raise NotFound(f"no job {job_id} (finished jobs are deleted after their retention time)", param="job_id")
        return job_object(job)

    @delete(
        "/jobs/{job_id:str}", status_code=200, summary="Cancel a queued or running job", responses=errors(*SERVED, 404)
    )
    async def cancel_job(self, job_id: str, runner: JobRunner, owner: str) -> JobObject:
        if await runner.store.get(job_id, owner) is None:
            raise NotFound(f"no job {job_id}", param="job_id")
        await runner.cancel(job_id)
        job = await runner.store.get(job_id, owner)
        assert job is not None
        return job_object(job)

    @get("/jobs", summary="Jobs, oldest first; filter by status, page with `after`", responses=errors(*SERVED))
    async def list_jobs(
        self,
        runner: JobRunner,
        owner: str,
        status: JobStatus | None = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        after: str | None = None,
    ) -> JobList:
        jobs, has_more = await runner.store.list(status, limit, after, owner)
        return JobList([job_object(job) for job in jobs], has_more, jobs[-1].id if jobs else None)


# One submit route per registry entry, on the controller like its hand-written routes.
for _endpoint in ENDPOINTS.values():
    setattr(JobsController, f"submit_{_endpoint.kind}", submit_handler(_endpoint))
