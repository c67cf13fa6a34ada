"""Every error leaves as `{"error": {"message", "type", "param"}}`, mapped in one place."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException

from monolith.errors import BadRequest, InternalError, MonolithError
from monolith.protocol.errors import ErrorResponse, error_response, field_of

log = logging.getLogger(__name__)

_HTTP_TYPES = {404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large"}


def respond(exc: MonolithError) -> Response[ErrorResponse]:
    """Every error answer: the one body (protocol.errors.error_response), the status and headers the error knows."""
    headers = dict(exc.headers or {})
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return Response(error_response(exc), status_code=exc.status_code, headers=headers or None)


class HttpError(MonolithError):
    """Litestar's own errors (a 404 route, a 405 method, a 413 body, a malformed body) as domain errors."""

    def __init__(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code, self.error_type, self.headers = status, kind, headers


def _param_of(detail: Any) -> str | None:
    """Litestar passes msgspec's message on in the first entry of `extra`, cut before " - at `$.path`", and the
    path as `key`: an unknown or missing field inside an object is named by both (`structured_outputs.regexp`)."""
    if not (isinstance(detail, list) and detail and isinstance(detail[0], dict)):
        return None
    field = field_of(str(detail[0].get("message", "")))
    key = detail[0].get("key")
    where = None if key in (None, "data") else str(key)
    if where and detail[0].get("source") == "header":  # the header as the client sent it, not the argument
        where = "-".join(part.capitalize() for part in where.split("_"))
    if field and where and not field.startswith(where):
        return f"{where}.{field}"
    return field or where


def handle_validation(request: Request, exc: ValidationException) -> Response[ErrorResponse]:
    extra = exc.extra
    message = exc.detail
    if isinstance(extra, list) and extra and isinstance(extra[0], dict) and extra[0].get("message"):
        message = str(extra[0]["message"])
    return respond(BadRequest(message, param=_param_of(extra)))


def handle_monolith(request: Request, exc: MonolithError) -> Response[ErrorResponse]:
    return respond(exc)


def handle_http(request: Request, exc: HTTPException) -> Response[ErrorResponse]:
    if exc.status_code >= 500:
        return handle_unexpected(request, exc.__cause__ if isinstance(exc.__cause__, Exception) else exc)
    kind = _HTTP_TYPES.get(exc.status_code, "invalid_request_error")
    message = exc.detail
    if isinstance(exc.__cause__, SerializationException):
        message = f"malformed JSON body: {exc.detail}"
    return respond(HttpError(exc.status_code, message, kind, exc.headers))


# What a client can send that the JSON decoder does not turn into a 400 itself.
_UNDECODABLE = {
    RecursionError: "the JSON body is nested too deeply",
    UnicodeDecodeError: "the body is not valid UTF-8",
}


def _undecodable(exc: BaseException | None) -> str | None:
    while exc is not None:
        for kind, message in _UNDECODABLE.items():
            if isinstance(exc, kind):
                return message
        exc = exc.__cause__ or exc.__context__
    return None


def handle_unexpected(request: Request, exc: Exception) -> Response[ErrorResponse]:
    """The exception's text stays in the log, next to the request id; the client gets a reference."""
    if message := _undecodable(exc):
        return respond(BadRequest(message))
    request_id = request.scope.get("state", {}).get("request_id", "")
    log.error("unhandled error on %s %s (request %s)", request.method, request.url.path, request_id, exc_info=exc)
    return respond(InternalError(f"internal server error (request {request_id})"))


EXCEPTION_HANDLERS = {
    ValidationException: handle_validation,
    MonolithError: handle_monolith,
    HTTPException: handle_http,
    Exception: handle_unexpected,
}
