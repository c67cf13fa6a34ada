"""SageMaker's inference container contract (AWS, "Use your own inference code with hosting services" and "with
batch transform"), so one image serves SageMaker real-time, asynchronous and batch transform endpoints:

- `GET|POST /ping`: 200 with an empty body once ready, 503 before (and while draining); it reads the phase only,
  never waits for the engine.
- `POST /invocations`: the body decides the API, first match wins (dispatch_path): TGI's payload (`inputs`) ->
  TGI generate, answered as TGI's SageMaker container answers (a list of one); `messages` -> chat completions
  (the RAG model name, or `"rag": true`, gives RAG with sources); `prompt` -> completions; `query` -> /rag;
  `input` -> embeddings when `model` is the embedding model, else Responses (both APIs call it `input` and both
  take a string, so the model is what tells them apart; with no model, a list of message objects is Responses).
  `stream: true` streams (what InvokeEndpointWithResponseStream relays). Anything else is a 400 saying why.
- `Content-Type: application/jsonlines` on /invocations: batch transform's MULTI_RECORD mini-batch (SplitType
  Line): every line a request of its own, run concurrently as batch work, one answer line per input line, in
  order (AssembleWith Line); a bad line gets its error body as its line.
- `GET /execution-parameters`: what batch transform should send (MaxConcurrentTransforms, MULTI_RECORD,
  MaxPayloadInMB).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post, route
from litestar.response import Stream

from monolith import tracing
from monolith.api.errors import respond
from monolith.api.openapi import GENERATION, errors
from monolith.api.realtime import answer
from monolith.api.tgi import TGI_PATH, as_tgi, compat_answer, tgi_error_frame, tgi_errors
from monolith.config import Settings
from monolith.errors import BadRequest, MonolithError, as_domain_error
from monolith.jobs.lines import answer_in_background
from monolith.protocol.errors import error_response
from monolith.runtime import Phase, Runtime
from monolith.serving.registry import ENDPOINTS, body_of
from monolith.serving.services import Services

JSONLINES = {"application/jsonlines", "application/jsonl", "application/x-jsonlines", "application/json-lines"}
REALTIME_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker real-time's own limit; async endpoints send up to 1 GB
MAX_PAYLOAD_MB = 100  # batch transform's largest MaxPayloadInMB


def dispatch_path(body: Any, settings: Settings) -> str:
    """Which registry entry a JSON body is for (the module's docstring gives the rules and why)."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object: a TGI, OpenAI or /rag request")
    if "inputs" in body:
        return TGI_PATH
    if "messages" in body:
        return "/v1/chat/completions"
    if "prompt" in body:
        return "/v1/completions"
    if "query" in body:
        return "/rag"
    if "input" in body:
        model = body.get("model")
        if model == settings.embedder.served_model_name:
            return "/v1/embeddings"
        items = body["input"]
        message_list = isinstance(items, list) and bool(items) and all(isinstance(i, dict) for i in items)
        return "/v1/responses" if model is not None or message_list else "/v1/embeddings"
    raise BadRequest(
        "no API takes this body: send TGI's `inputs`, or OpenAI's `messages` (chat), `prompt` (completions) or "
        "`input` (embeddings, Responses), or /rag's `query`"
    )


def payload_limit(settings: Settings) -> int:
    return max(REALTIME_PAYLOAD_BYTES, settings.server.max_body_bytes)


class SageMakerController(Controller):
    tags = ["sagemaker"]

    @route(
        "/ping",
        http_method=["GET", "POST"],
        status_code=200,
        media_type=MediaType.TEXT,
        summary="SageMaker's health check: an empty 200 once ready",
        responses=errors(503),
    )
    async def ping(self, runtime: Runtime) -> Response[bytes]:
        return Response(b"", status_code=200 if runtime.phase is Phase.READY else 503, media_type="text/plain")

    @get("/execution-parameters", summary="What SageMaker batch transform should send", responses=errors(401))
    async def execution_parameters(self, settings: Settings) -> dict[str, Any]:
        return {
            "MaxConcurrentTransforms": settings.engine.max_num_seqs,
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": max(1, min(MAX_PAYLOAD_MB, payload_limit(settings) // (1024 * 1024))),
        }

    @post(
        "/invocations",
        status_code=200,
        summary="SageMaker: the body decides the API (TGI, chat, completions, embeddings, Responses, RAG)",
        # A TGI payload's errors are TGI's (its 422 among them); every other body's are OpenAI's.
        responses={**errors(*GENERATION), **tgi_errors()},
    )
    async def invocations(self, request: Request, services: Services, runtime: Runtime) -> Response[Any] | Stream:
        return await invoke(request, services, runtime)

    @post(
        "/endpoints/{endpoint_name:str}/invocations",
        status_code=200,
        summary="SageMaker runtime's own path: boto3's invoke_endpoint can call this server directly",
        responses={**errors(*GENERATION), **tgi_errors()},
    )
    async def runtime_invocations(
        self, request: Request, services: Services, runtime: Runtime, endpoint_name: str
    ) -> Response[Any] | Stream:
        # One server is one endpoint: whatever name the caller uses reaches it.
        return await invoke(request, services, runtime)


async def invoke(request: Request, services: Services, runtime: Runtime) -> Response[Any] | Stream:
    raw = await request.body()
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media in JSONLINES:
        return await transform(raw, services, runtime)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not JSON (batch transform: Content-Type application/jsonlines)") from None
    path = dispatch_path(body, services.settings)
    if path != TGI_PATH:
        return await answer(request, path, body_of(ENDPOINTS[path], raw), services)
    try:  # TGI's payload is answered, errors too, as TGI's SageMaker container answers it
        data = body_of(ENDPOINTS[path], raw)
        stream = bool(getattr(data, "stream", False))
        answered = await answer(request, path, data, services, stream=stream, on_error=tgi_error_frame)
        return compat_answer(answered)
    except MonolithError as exc:
        return as_tgi(respond(exc))


async def transform(raw: bytes, services: Services, runtime: Runtime) -> Response[bytes]:
    """A MULTI_RECORD mini-batch: one answer line per input line, in order."""
    lines = raw.split(b"\n")
    if lines and not lines[-1].strip():
        lines.pop()  # the newline that ends the last record
    limit = services.settings.files.max_lines
    if len(lines) > limit:
        raise BadRequest(f"{len(lines)} records in one request; the limit is {limit} (files.max_lines)")
    queued_at = time.time()
    slots = asyncio.Semaphore(services.settings.engine.max_num_seqs)

    async def one(number: int, line: bytes) -> bytes:
        request_id = f"transform-{number}-{int(queued_at * 1000)}"
        # With tracing on, a span per record under the request's (a batch transform's mini-batch is one request).
        with tracing.step("sagemaker.record", {"monolith.sagemaker.record": number, "monolith.request_id": request_id}):
            return await record(number, line, request_id)

    async def record(number: int, line: bytes, request_id: str) -> bytes:
        tgi = False
        try:
            try:
                body = json.loads(line)
            except (ValueError, RecursionError):
                raise BadRequest(f"record {number} is not JSON") from None
            path = dispatch_path(body, services.settings)
            tgi = path == TGI_PATH
            endpoint = ENDPOINTS[path]
            data = body_of(endpoint, line)
            async with slots:  # the engine's slots at most, budget (none without a job store) or not
                result = await answer_in_background(services, runtime.budget, endpoint, data, request_id, queued_at)
            return msgspec.json.encode([result] if tgi else result)
        except Exception as failure:
            exc = as_domain_error(failure, f"request {request_id}")
            tracing.event(
                "record.failed", {"http.response.status_code": exc.status_code, "error.type": type(exc).__name__}
            )
            response = as_tgi(respond(exc)) if tgi else None
            return msgspec.json.encode(response.content if response is not None else error_response(exc))

    answers = await asyncio.gather(*(one(i + 1, line) for i, line in enumerate(lines)))
    return Response(b"\n".join(answers) + b"\n", media_type="application/jsonlines")
