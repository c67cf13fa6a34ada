"""Async jobs: what a submit answers, and a job as GET /v1/jobs/{id} (and its callback) shows it."""

from __future__ import annotations

from typing import Any

import msgspec

from monolith.protocol.errors import ErrorBody


class JobAccepted(msgspec.Struct):
    """202: the job is queued; poll `status_url` or wait for the callback."""

    id: str
    status: str
    status_url: str
    object: str = "job"


class JobCallback(msgspec.Struct):
    url: str  # shown without credentials, path or query
    state: str | None
    attempts: int


class JobObject(msgspec.Struct):
    id: str
    kind: str
    status: str
    status_url: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    result: Any  # the route's own answer, as its real-time route gives it
    error: ErrorBody | None
    object: str = "job"
    callback: JobCallback | msgspec.UnsetType = msgspec.UNSET  # only for a job submitted with a callback_url


class JobList(msgspec.Struct):
    data: list[JobObject]
    has_more: bool
    last_id: str | None
    object: str = "list"
