"""The domain's exceptions. Each knows its HTTP status; the edge maps them in one handler."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class MonolithError(Exception):
    status_code = 500
    error_type = "internal_error"
    code: str | None = None  # OpenAI's error.code, where a client tells errors of one type apart by it
    headers: dict[str, str] | None = None  # what the answer must carry besides Retry-After

    def __init__(self, message: str, *, param: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after


class InternalError(MonolithError):
    """Something broke that the client cannot mend; the message carries only a reference, the log the rest."""


def as_domain_error(exc: Exception, what: str, message: str = "internal error") -> MonolithError:
    """A domain error as it is; anything else is logged with its traceback and answered as an InternalError that
    names only `what` (a request or job id: the client reads it, the log holds the rest)."""
    if isinstance(exc, MonolithError):
        return exc
    log.error("%s failed", what, exc_info=exc)
    return InternalError(f"{message} ({what})")


class Unauthorized(MonolithError):
    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"
    headers = {"WWW-Authenticate": "Bearer"}


class BadRequest(MonolithError):
    status_code = 400
    error_type = "invalid_request_error"


class NotFound(MonolithError):
    status_code = 404
    error_type = "not_found_error"


class ModelNotFound(NotFound):
    """A model (or TGI adapter) name this server does not serve: OpenAI's 404, told apart by its code."""

    error_type = "invalid_request_error"
    code = "model_not_found"


class Conflict(MonolithError):
    status_code = 409
    error_type = "conflict"


class NotReady(MonolithError):
    status_code = 503
    error_type = "not_ready"


class DependencyDown(MonolithError):
    """Qdrant unreachable, a collection missing, the engine dead: never a silent empty answer."""

    status_code = 503
    error_type = "dependency_unavailable"


class StoreDown(DependencyDown):
    """The job store (its database) is unreachable or too slow: what needs it answers 503 with Retry-After, and
    real-time serving, which never needs it, goes on."""

    code = "store_unavailable"


class QuotaExceeded(MonolithError):
    """An owner's share of the service is used up (OpenAI answers `insufficient_quota` with a 429 too)."""

    status_code = 429
    error_type = "insufficient_quota"


class StorageFull(MonolithError):
    """The disk is full: nothing half-written was kept, nothing stored before was touched."""

    status_code = 507
    error_type = "insufficient_storage"


class JobRunsExhausted(MonolithError):
    """A job whose runner died store.max_runs times: it is not started again."""

    error_type = "job_runs_exhausted"


class Overloaded(MonolithError):
    status_code = 429
    error_type = "overloaded"


class DeadlineExceeded(MonolithError):
    status_code = 504
    error_type = "timeout"


class ClientGone(MonolithError):
    """The client closed the connection; nobody reads this status, but the logs and metrics do."""

    status_code = 499
    error_type = "client_closed_request"


def is_outage(exc: BaseException) -> bool:
    """A dependency's fault (the engine stopped or not loaded, the vector store or the job store unreachable, a
    full disk), never the request's: background work that meets one goes back to wait, neither failed nor counted."""
    return isinstance(exc, (DependencyDown, NotReady, StorageFull))


# What the job store raises when it cannot take a call (unreachable, or out of room): the runners' loops wait
# with backoff on these, and the store's health says so once, instead of a traceback per call.
STORE_OUTAGES = (StoreDown, StorageFull)
