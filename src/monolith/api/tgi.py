"""TGI's routes on every deployment: `POST /generate`, `POST /generate_stream` and `POST /` (TGI's compat route,
where `stream` chooses and a JSON answer is a list of one), with TGI's error shape on each. One registry entry
(`/generate`) behind them, so async jobs, batch lines and SageMaker's /invocations take TGI's payload too."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Stream

from monolith.api.errors import EXCEPTION_HANDLERS, respond
from monolith.api.openapi import WHY
from monolith.api.realtime import answer
from monolith.errors import MonolithError
from monolith.protocol.errors import ErrorResponse
from monolith.protocol.tgi import TgiError, TgiRequest
from monolith.serving.answers import frame
from monolith.serving.services import Services

TGI_PATH = "/generate"  # the registry's entry
# TGI's statuses and error types: a bad request is its 422 "validation", a full queue its 429 "overloaded".
_TGI_STATUS = {400: (422, "validation"), 404: (422, "validation"), 413: (413, "validation"), 429: (429, "overloaded")}


def tgi_error(status: int, body: ErrorResponse) -> tuple[int, TgiError]:
    code, kind = _TGI_STATUS.get(status, (status, "generation" if status >= 500 else body.error.type))
    if body.error.code == "model_not_found":  # an unknown adapter_id: a 404 on every route, never a fallback
        code, kind = 404, "model_not_found"
    message = body.error.message
    if body.error.param and body.error.param not in message:
        message = f"{body.error.param}: {message}"
    return code, TgiError(message, kind)


def as_tgi(response: Response[Any]) -> Response[TgiError]:
    """An error answer rendered the one way (api.errors), reshaped as TGI's {"error", "error_type"}."""
    assert isinstance(response.content, ErrorResponse)
    status, body = tgi_error(response.status_code, response.content)
    return Response(body, status_code=status, headers=response.headers)


def _tgi_handler(kind: type[Exception]) -> Any:
    handler = EXCEPTION_HANDLERS[kind]

    def handle(request: Request, exc: Exception) -> Response[TgiError]:
        return as_tgi(handler(request, exc))  # type: ignore[operator]

    return handle


TGI_EXCEPTION_HANDLERS = {k: _tgi_handler(k) for k in (ValidationException, MonolithError, HTTPException, Exception)}


def tgi_error_frame(exc: MonolithError) -> bytes:
    """A stream that fails after its first byte ends with TGI's error event."""
    response = respond(exc)
    return frame(tgi_error(response.status_code, response.content)[1])


def tgi_errors() -> dict[int, ResponseSpec]:
    """TGI's error body for each status its routes answer with (a bad request is TGI's 422)."""
    return {
        code: ResponseSpec(data_container=TgiError, description=WHY[code], generate_examples=False)
        for code in (401, 404, 413, 422, 429, 503, 504)
    }


def compat_answer(answered: Response[Any] | Stream) -> Response[Any] | Stream:
    """TGI's compat route (and SageMaker's /invocations with a TGI payload) wrap a JSON answer in a list."""
    if isinstance(answered, Stream):
        return answered
    return Response([answered.content], status_code=answered.status_code, headers=answered.headers)


async def generate(request: Request, data: TgiRequest, services: Services, stream: bool) -> Response[Any] | Stream:
    return await answer(request, TGI_PATH, data, services, stream=stream, on_error=tgi_error_frame)


class TgiController(Controller):
    tags = ["tgi"]
    exception_handlers = TGI_EXCEPTION_HANDLERS  # type: ignore[assignment]

    @post(TGI_PATH, status_code=200, summary="TGI: generate (JSON; streamed if the body asks)", responses=tgi_errors())
    async def generate(self, request: Request, data: TgiRequest, services: Services) -> Response[Any] | Stream:
        # TGI's own /generate has no `stream` and ignores it; a body that asks to stream is streamed here.
        return await generate(request, data, services, stream=data.stream)

    @post("/generate_stream", status_code=200, summary="TGI: generate, streamed", responses=tgi_errors())
    async def generate_stream(self, request: Request, data: TgiRequest, services: Services) -> Response[Any] | Stream:
        return await generate(request, data, services, stream=True)

    @post("/", status_code=200, summary="TGI's compat route: `stream` chooses; JSON is a list", responses=tgi_errors())
    async def compat(self, request: Request, data: TgiRequest, services: Services) -> Response[Any] | Stream:
        return compat_answer(await generate(request, data, services, stream=data.stream))
