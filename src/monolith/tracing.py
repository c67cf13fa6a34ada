"""OpenTelemetry traces, configured only by the standard `OTEL_*` environment variables, so that a collector set up
for `vllm serve` or TGI works unchanged, and off unless they ask for an exporter: with none, no tracer provider
is installed, nothing is wrapped, and a request costs what it did.

On: `OTEL_TRACES_EXPORTER` names one (`otlp`, `console`; `none` is off), or it is unset and an OTLP endpoint is set
(`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). `OTEL_SDK_DISABLED=true` wins over both.
The OTLP protocol is `http/protobuf` unless `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL` say
`grpc`. Everything else (endpoint, headers, timeout, compression, the sampler and its argument, the service name
and resource attributes, the batch processor's delays) the SDK reads from its own variables."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import aclosing, contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from monolith.config import ConfigError
from monolith.engine import Delta, EngineTimings, Sampling

SERVICE = "monolith"
PROTOCOLS = ("http/protobuf", "grpc")
EXPORTERS = ("otlp", "console", "none")
CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


def exporter_names(env: Mapping[str, str]) -> list[str]:
    """The exporters the environment asks for; none means tracing is off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = env.get("OTEL_TRACES_EXPORTER")
    if named is None:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if endpoint else []
    names = [name.strip().lower() for name in named.split(",") if name.strip()]
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        raise ConfigError(f"OTEL_TRACES_EXPORTER: {unknown[0]!r} is not one of {', '.join(EXPORTERS)}")
    return [name for name in names if name != "none"]


def span_exporter(name: str, env: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or PROTOCOLS[0]
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not one of {', '.join(PROTOCOLS)}")


def tracer_provider() -> TracerProvider | None:
    """A provider exporting where this process's environment says, or None when it asks for no exporter. The
    sampler comes from OTEL_TRACES_SAMPLER (parent-based always-on by default), the resource from OTEL_SERVICE_NAME
    and OTEL_RESOURCE_ATTRIBUTES ("monolith" when neither names the service): the SDK reads os.environ for those,
    so this reads nothing else."""
    env = os.environ
    names = exporter_names(env)
    if not names:
        return None
    exporters = [span_exporter(name, env) for name in names]  # every name checked before anything starts
    named = env.get("OTEL_SERVICE_NAME") or "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    provider = TracerProvider(resource=Resource.create({} if named else {SERVICE_NAME: SERVICE}))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def start_tracing(log_format: str = "text") -> TracerProvider | None:
    """Installs the environment's provider for this process (once: OpenTelemetry keeps the first), and the trace
    id in every log line written inside a span (its own fields in JSON lines, a suffix of text ones). None:
    tracing is off."""
    provider = tracer_provider()
    if provider is not None:
        trace.set_tracer_provider(provider)
        correlate_logs(in_message=log_format == "text")
    return provider


def enabled() -> bool:
    """Whether a real provider is installed: everything traced is skipped, not merely unrecorded, without one."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


@contextmanager
def step(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[trace.Span | None]:
    """A step of a request (a RAG step) as a span under the current one, current while it runs; None when off."""
    if not enabled():
        yield None
        return
    with trace.get_tracer("monolith.steps").start_as_current_span(name, attributes=attributes) as span:
        yield span


def event(name: str, attributes: Mapping[str, Any]) -> None:
    """Something the current span should show (the relevance floor's verdict): an event on it, when traced."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(name, attributes)


def current_traceparent() -> str | None:
    """The current span's W3C traceparent (what a job keeps of its submit), or None outside a traced span."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def background_span(name: str, attributes: Mapping[str, Any], traceparent: str | None) -> Iterator[None]:
    """A run of background work (an async job, a batch), on whichever replica claimed it, perhaps after a restart:
    a trace of its own, current while it runs so that its generations (a batch's line spans) nest under it, linked
    to the span that submitted it (whose trace then shows where its work went)."""
    if not enabled():
        yield
        return
    submitted = trace.get_current_span(propagate.extract({"traceparent": traceparent or ""})).get_span_context()
    links = [trace.Link(submitted, {"monolith.link": "submitted"})] if submitted.is_valid else []
    tracer = trace.get_tracer("monolith.jobs")
    with tracer.start_as_current_span(
        name, context=Context(), kind=trace.SpanKind.CONSUMER, links=links, attributes=attributes
    ):
        yield


def correlate_logs(in_message: bool = True) -> None:
    """Each log record made inside a span carries its trace and span ids (`trace_id`, `span_id`: JSON lines show
    them as fields) and, `in_message`, ends with them, whichever formatter writes it (uvicorn's, Litestar's,
    vLLM's, ours), so a request's log lines are found from its trace and back."""
    make_record = logging.getLogRecordFactory()

    def record_with_ids(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
            if in_message and isinstance(record.msg, str):  # hex ids: nothing for %-formatting to read
                record.msg = f"{record.msg} [trace_id={record.trace_id} span_id={record.span_id}]"
        return record

    logging.setLogRecordFactory(record_with_ids)


def sampling_attributes(sampling: Sampling, model: str, request_id: str) -> dict[str, Any]:
    """The OpenTelemetry GenAI semantic conventions' request attributes of one engine generation."""
    attributes = {
        "gen_ai.operation.name": "text_completion",  # token ids in, tokens out: chat templates are applied above
        "gen_ai.provider.name": "vllm",
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": sampling.max_tokens,
        "gen_ai.request.temperature": sampling.temperature,
        "gen_ai.request.top_p": sampling.top_p,
        "gen_ai.request.choice.count": sampling.n,
        "gen_ai.response.id": request_id,
    }
    if sampling.seed is not None:  # none asked: no attribute, rather than a made-up value
        attributes["gen_ai.request.seed"] = sampling.seed
    return attributes


def capture_content() -> bool:
    """The GenAI instrumentations' standard opt-in: prompt and completion text go on the generation spans only when
    OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT is true (they may hold what a user wrote)."""
    return os.environ.get(CAPTURE_CONTENT, "").strip().lower() == "true"


def engine_attributes(timings: EngineTimings) -> dict[str, Any]:
    """The engine's own timings of a generation, under the names `vllm serve` gives them on its spans."""
    return {
        "gen_ai.latency.time_in_queue": timings.queued_s,
        "gen_ai.latency.time_in_model_prefill": timings.prefill_s,
        "gen_ai.latency.time_in_model_decode": timings.decode_s,
        "gen_ai.latency.time_to_first_token": timings.first_token_s,
        "monolith.engine.preemptions": timings.preemptions,
    }


def content_attributes(prompt: str, texts: dict[int, list[str]], finish: dict[int, str]) -> dict[str, str]:
    """Prompt and completions in the GenAI conventions' message form (JSON): the prompt as the engine saw it, the
    chat template applied, and each choice's text."""
    inputs = [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]
    outputs = [
        {"role": "assistant", "parts": [{"type": "text", "content": "".join(texts[i])}], "finish_reason": finish.get(i)}
        for i in sorted(texts)
    ]
    return {"gen_ai.input.messages": json.dumps(inputs), "gen_ai.output.messages": json.dumps(outputs)}


async def traced_generation(
    stream: AsyncIterator[Delta],
    sampling: Sampling,
    model: str,
    request_id: str,
    lane: str,
    prompt: str | None = None,
) -> AsyncIterator[Delta]:
    """One engine generation as a span (`text_completion <model>`) under the span current when it starts: its
    sampling, then its usage, finish reasons, first-token time and the engine's own timings however it ends
    (finished, aborted, failed); `prompt` and the completion text too when given (capture_content).
    Not made current: an async generator's context is its consumer's, so a current span would leak into it."""
    tracer = trace.get_tracer("monolith.generation")
    attributes = sampling_attributes(sampling, model, request_id) | {"monolith.lane": lane}
    span = tracer.start_span(f"text_completion {model}", attributes=attributes)
    started = time.perf_counter()
    prompt_tokens, produced, finish = 0, {}, {}
    texts: dict[int, list[str]] = {}
    try:
        async with aclosing(stream) as deltas:
            async for delta in deltas:
                if not produced:
                    span.set_attribute("monolith.time_to_first_token_s", round(time.perf_counter() - started, 6))
                    span.add_event("first_token")
                prompt_tokens = delta.prompt_tokens
                produced[delta.index] = delta.completion_tokens
                if delta.finish_reason:
                    finish[delta.index] = delta.finish_reason
                if delta.timings is not None:
                    span.set_attributes(engine_attributes(delta.timings))
                if prompt is not None:
                    texts.setdefault(delta.index, []).append(delta.text)
                yield delta
    except (GeneratorExit, asyncio.CancelledError):
        span.set_attribute("monolith.aborted", True)  # the client left, or the deadline passed: not an error here
        raise
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(trace.StatusCode.ERROR, type(exc).__name__)
        raise
    finally:
        span.set_attributes(
            {
                "gen_ai.response.model": model,
                "gen_ai.usage.input_tokens": prompt_tokens,
                "gen_ai.usage.output_tokens": sum(produced.values()),
                "gen_ai.response.finish_reasons": [finish[i] for i in sorted(finish)],
            }
        )
        if prompt is not None:
            span.set_attributes(content_attributes(prompt, texts, finish))
        span.end()
