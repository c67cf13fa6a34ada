"""Tracing's configuration from the standard OTEL_* variables (off unless an exporter is asked for), the sampler
they choose, the generation span however a generation ends, and the trace id in log lines. A real server
exporting to a real receiver: tests/api/test_tracing.py."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from monolith import cli, logs
from monolith.admission import Admission
from monolith.config import ConfigError, Settings
from monolith.engine import Delta, EngineTimings, Sampling
from monolith.generation import Generator
from monolith.metrics import exemplar
from monolith.tracing import correlate_logs, exporter_names, span_exporter, traced_generation, tracer_provider
from monolith.work import Work
from tests.scripted import ScriptedEngine

OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": " OTLP , console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, []),
    ],
)
def test_tracing_is_off_unless_the_environment_asks_for_an_exporter(env: dict[str, str], names: list[str]) -> None:
    assert exporter_names(env) == names


def test_an_unknown_exporter_or_protocol_is_a_start_up_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER: 'zipkin'"):
        exporter_names({"OTEL_TRACES_EXPORTER": "otlp,zipkin"})
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json'"):
        span_exporter("otlp", {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_the_otlp_protocol_is_http_protobuf_unless_grpc_is_asked_for() -> None:
    assert isinstance(span_exporter("otlp", {}), HttpExporter)
    assert isinstance(span_exporter("otlp", {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}), GrpcExporter)
    traces_only = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
    assert isinstance(span_exporter("otlp", traces_only), HttpExporter)


def test_serve_refuses_a_bad_otel_variable_before_loading_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    assert cli.main(["serve"]) == 2
    assert "OTEL_TRACES_EXPORTER: 'jaeger'" in capsys.readouterr().err


ProviderMaker = Callable[..., tuple[TracerProvider, InMemorySpanExporter]]


@pytest.fixture
def provider_with_memory(monkeypatch: pytest.MonkeyPatch) -> Iterator[ProviderMaker]:
    """The environment's provider (console exporter, shut down by the test's end while its stdout is open), and
    an in-memory exporter beside it to read what it made."""
    made: list[TracerProvider] = []

    def make(**env: str) -> tuple[TracerProvider, InMemorySpanExporter]:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        provider = tracer_provider()
        assert provider is not None
        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        made.append(provider)
        return provider, memory

    yield make
    for provider in made:
        provider.shutdown()


def test_the_sampler_and_the_service_come_from_the_environment(provider_with_memory: ProviderMaker) -> None:
    provider, memory = provider_with_memory()
    with provider.get_tracer("t").start_as_current_span("kept"):
        pass
    assert [s.name for s in memory.get_finished_spans()] == ["kept"]
    assert provider.resource.attributes["service.name"] == "monolith"

    off, nothing = provider_with_memory(OTEL_TRACES_SAMPLER="always_off", OTEL_SERVICE_NAME="twins-eu")
    with off.get_tracer("t").start_as_current_span("dropped") as span:
        assert not span.is_recording()
    assert nothing.get_finished_spans() == ()
    assert off.resource.attributes["service.name"] == "twins-eu"


async def deltas(count: int, fail: bool = False) -> AsyncIterator[Delta]:
    for i in range(1, count + 1):
        yield Delta("w", i, 7, "length" if i == count else None)
    if fail:
        raise RuntimeError("the engine died")


@pytest.fixture
def generation_spans(
    monkeypatch: pytest.MonkeyPatch, provider_with_memory: ProviderMaker
) -> Iterator[InMemorySpanExporter]:
    provider, memory = provider_with_memory()
    monkeypatch.setattr("monolith.tracing.trace.get_tracer", provider.get_tracer)
    yield memory


async def test_a_generation_span_carries_its_sampling_and_usage(generation_spans: InMemorySpanExporter) -> None:
    sampling = Sampling(max_tokens=3, temperature=0.2, top_p=0.9, adapter="ada")
    texts = [d.text async for d in traced_generation(deltas(3), sampling, "ada", "req-1", "async")]
    assert texts == ["w"] * 3
    (span,) = generation_spans.get_finished_spans()
    assert span.name == "text_completion ada"
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.request.model"] == "ada" and attributes["gen_ai.request.temperature"] == 0.2
    assert attributes["gen_ai.usage.input_tokens"] == 7 and attributes["gen_ai.usage.output_tokens"] == 3
    assert attributes["gen_ai.response.finish_reasons"] == ("length",) and attributes["monolith.lane"] == "async"
    assert attributes["gen_ai.response.id"] == "req-1" and span.status.status_code == StatusCode.UNSET


async def test_an_aborted_generation_ends_its_span_with_what_it_made(generation_spans: InMemorySpanExporter) -> None:
    stream = traced_generation(deltas(10), Sampling(max_tokens=10), "twin", "req-2", "realtime")
    assert (await anext(stream)).completion_tokens == 1
    await anext(stream)
    await stream.aclose()  # the client left
    (span,) = generation_spans.get_finished_spans()
    assert span.attributes["monolith.aborted"] is True and span.attributes["gen_ai.usage.output_tokens"] == 2
    assert span.status.status_code == StatusCode.UNSET


async def test_a_failed_generation_is_an_error_span(generation_spans: InMemorySpanExporter) -> None:
    with pytest.raises(RuntimeError):
        async for _ in traced_generation(deltas(2, fail=True), Sampling(max_tokens=4), "twin", "req-3", "batch"):
            pass
    (span,) = generation_spans.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR and span.events[-1].name == "exception"


def test_a_log_line_written_in_a_span_carries_its_ids(provider_with_memory: ProviderMaker) -> None:
    provider, _ = provider_with_memory()
    factory = logging.getLogRecordFactory()
    correlate_logs()
    try:
        outside = logging.makeLogRecord({}).getMessage()
        with provider.get_tracer("t").start_as_current_span("request") as span:
            record = logging.getLogger("monolith.test").makeRecord("n", logging.INFO, "f", 1, "%d jobs", (3,), None)
            context = span.get_span_context()
    finally:
        logging.setLogRecordFactory(factory)
    assert record.getMessage() == f"3 jobs [trace_id={context.trace_id:032x} span_id={context.span_id:016x}]"
    assert "trace_id" not in outside


def test_a_log_line_in_json_carries_the_ids_as_fields_not_in_its_message(provider_with_memory: ProviderMaker) -> None:
    provider, _ = provider_with_memory()
    factory = logging.getLogRecordFactory()
    correlate_logs(in_message=False)
    try:
        with provider.get_tracer("t").start_as_current_span("request") as span:
            record = logging.getLogger("monolith.test").makeRecord("n", logging.INFO, "f", 1, "%d jobs", (3,), None)
            context = span.get_span_context()
    finally:
        logging.setLogRecordFactory(factory)
    line = json.loads(logs.formatter("json").format(record))
    assert line["message"] == "3 jobs" and line["levelname"] == "INFO" and line["name"] == "n"
    assert (line["trace_id"], line["span_id"]) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")


TIMINGS = EngineTimings(queued_s=0.5, prefill_s=0.25, decode_s=1.5, first_token_s=0.8, preemptions=1)


async def timed_deltas() -> AsyncIterator[Delta]:
    yield Delta("Hello", 1, 7)
    yield Delta(" there", 2, 7, "stop", timings=TIMINGS)


async def test_the_engines_own_timings_go_on_the_generation_span(generation_spans: InMemorySpanExporter) -> None:
    [_ async for _ in traced_generation(timed_deltas(), Sampling(max_tokens=4), "twin", "req-4", "realtime")]
    (span,) = generation_spans.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.latency.time_in_queue"] == 0.5
    assert attributes["gen_ai.latency.time_in_model_prefill"] == 0.25
    assert attributes["gen_ai.latency.time_in_model_decode"] == 1.5
    assert attributes["gen_ai.latency.time_to_first_token"] == 0.8 and attributes["monolith.engine.preemptions"] == 1


async def test_prompt_and_completion_text_only_when_given(generation_spans: InMemorySpanExporter) -> None:
    sampling = Sampling(max_tokens=4)
    [_ async for _ in traced_generation(timed_deltas(), sampling, "twin", "req-5", "realtime")]
    [_ async for _ in traced_generation(timed_deltas(), sampling, "twin", "req-6", "realtime", "Say hi.")]
    without, with_content = generation_spans.get_finished_spans()
    assert not {"gen_ai.input.messages", "gen_ai.output.messages"} & set(without.attributes or {})
    inputs = json.loads(with_content.attributes["gen_ai.input.messages"])
    outputs = json.loads(with_content.attributes["gen_ai.output.messages"])
    assert inputs == [{"role": "user", "parts": [{"type": "text", "content": "Say hi."}]}]
    assert outputs == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Hello there"}], "finish_reason": "stop"}
    ]


@pytest.mark.parametrize(("value", "captured"), [(None, False), ("false", False), ("true", True), (" TRUE ", True)])
async def test_the_generator_records_content_only_with_the_standard_opt_in(
    generation_spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    value: str | None,
    captured: bool,
) -> None:
    if value is not None:
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", value)
    generator = Generator(ScriptedEngine(gap_s=0), settings, Admission())  # type: ignore[arg-type]
    generator.traced = True  # as with a provider installed, which this process must not get for good
    stream = generator.stream([1, 2, 3], Sampling(max_tokens=2), "req-7", Work())
    assert [d.text async for d in stream] == [" w", " w"]
    (span,) = generation_spans.get_finished_spans()
    assert ("gen_ai.input.messages" in (span.attributes or {})) is captured
    if captured:
        assert json.loads(span.attributes["gen_ai.input.messages"])[0]["parts"][0]["content"] == "w w w"


async def test_an_exemplar_names_the_current_sampled_span_only(provider_with_memory: ProviderMaker) -> None:
    provider, _ = provider_with_memory()
    assert exemplar() is None, "outside a span"
    with provider.get_tracer("t").start_as_current_span("request") as span:
        context = span.get_span_context()
        assert exemplar() == {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}
    off, _ = provider_with_memory(OTEL_TRACES_SAMPLER="always_off")
    with off.get_tracer("t").start_as_current_span("dropped"):
        assert exemplar() is None, "a trace no one will see"
