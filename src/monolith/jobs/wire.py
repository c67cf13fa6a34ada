"""Jobs, files and batches as clients see them (protocol/ types), built from the store's records, which know
nothing of the wire. The job body is also what a callback delivers."""

from __future__ import annotations

import json

import msgspec

from monolith.jobs.destinations import shown
from monolith.protocol.batches import BatchError, BatchErrors, BatchObject, RequestCounts
from monolith.protocol.errors import ErrorBody
from monolith.protocol.files import FileObject
from monolith.protocol.jobs import JobCallback, JobObject
from monolith.store.batches import BatchRecord
from monolith.store.files import FileRecord
from monolith.store.jobs import Job


def status_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def job_object(job: Job) -> JobObject:
    """A job as the API shows it: its callback URL without credentials, path or query."""
    callback: JobCallback | msgspec.UnsetType = msgspec.UNSET
    if job.callback_url:
        callback = JobCallback(shown(job.callback_url), job.callback_state, job.callback_attempts)
    return JobObject(
        id=job.id,
        kind=job.kind,
        status=job.status,
        status_url=status_url(job.id),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        result=msgspec.json.decode(job.result) if job.result else None,
        error=msgspec.json.decode(job.error, type=ErrorBody) if job.error else None,
        callback=callback,
    )


def render_job(job: Job) -> bytes:
    return msgspec.json.encode(job_object(job))


def file_object(record: FileRecord, ttl_s: float) -> FileObject:
    return FileObject(
        id=record.id,
        filename=record.filename,
        purpose=record.purpose,
        bytes=record.bytes,
        created_at=record.created_at,
        expires_at=record.created_at + int(ttl_s),
    )


def batch_object(record: BatchRecord) -> BatchObject:
    done = record.status in ("completed", "cancelled", "expired")
    return BatchObject(
        id=record.id,
        endpoint=record.endpoint,
        errors=BatchErrors([BatchError("batch_failed", record.error)]) if record.error else None,
        input_file_id=record.input_file_id,
        completion_window=record.completion_window,
        status=record.status,
        output_file_id=record.output_file_id if done else None,
        error_file_id=record.error_file_id if done and record.failed else None,
        created_at=record.created_at,
        in_progress_at=record.in_progress_at,
        completed_at=record.completed_at,
        cancelled_at=record.cancelled_at,
        failed_at=record.failed_at,
        expires_at=record.expires_at,
        expired_at=record.expired_at,
        request_counts=RequestCounts(record.total, record.completed, record.failed),
        metadata=json.loads(record.metadata) if record.metadata else None,
    )
