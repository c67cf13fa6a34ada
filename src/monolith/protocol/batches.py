"""OpenAI's batches (`client.batches.*`): a batch, its counts, a list of them. (The endpoints a batch may name
are the serving registry's: `serving.registry.BatchEndpoint`.)"""

from __future__ import annotations

from typing import Any

import msgspec


class BatchError(msgspec.Struct):
    code: str
    message: str | None


class BatchErrors(msgspec.Struct):
    data: list[BatchError]
    object: str = "list"


class RequestCounts(msgspec.Struct):
    total: int
    completed: int
    failed: int


class BatchObject(msgspec.Struct):
    id: str
    endpoint: str
    errors: BatchErrors | None
    input_file_id: str
    completion_window: str
    status: str
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    in_progress_at: int | None
    completed_at: int | None
    cancelled_at: int | None
    failed_at: int | None
    expires_at: int | None
    expired_at: int | None
    request_counts: RequestCounts
    metadata: dict[str, Any] | None
    object: str = "batch"


class BatchList(msgspec.Struct):
    data: list[BatchObject]
    has_more: bool
    first_id: str | None
    last_id: str | None
    object: str = "list"
