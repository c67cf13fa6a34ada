"""Every Prometheus metric, declared once. Other modules import these objects."""

from __future__ import annotations

from collections.abc import Iterator

from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

REGISTRY = CollectorRegistry()


def exemplar() -> dict[str, str] | None:
    """The current span's ids as a histogram observation's exemplar (shown in an OpenMetrics scrape, so that a
    slow bucket on a dashboard leads to one slow request's trace), or None outside a span that is exported:
    with tracing off, or a sampler that dropped this trace, an id would lead nowhere."""
    context = trace.get_current_span().get_span_context()
    if not (context.is_valid and context.trace_flags.sampled):
        return None
    return {"trace_id": trace.format_trace_id(context.trace_id), "span_id": trace.format_span_id(context.span_id)}


_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)

REQUESTS = Counter(
    "monolith_requests",
    "HTTP requests by route template, method and status code.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
REQUEST_LATENCY = Histogram(
    "monolith_request_duration_seconds",
    "Time from request received to response finished, by route.",
    ["route"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "monolith_time_to_first_token_seconds",
    "Time from submitting a generation to the engine until its first token, by lane (realtime, async, batch).",
    ["lane"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
GENERATED_TOKENS = Counter("monolith_generated_tokens", "Completion tokens produced by the engine.", registry=REGISTRY)
# By model: the base model's served name or a twin's. Only configured names ever become a label (a name is
# resolved, or refused with a 404, before anything reaches the engine), so the series stay bounded.
MODEL_GENERATIONS = Counter(
    "monolith_model_generations",
    "Engine generations by model (the base or a twin); a RAG request's helper steps count for the base.",
    ["model"],
    registry=REGISTRY,
)
MODEL_GENERATED_TOKENS = Counter(
    "monolith_model_generated_tokens",
    "Completion tokens produced by the engine, by model.",
    ["model"],
    registry=REGISTRY,
)
MODEL_TIME_TO_FIRST_TOKEN = Histogram(
    "monolith_model_time_to_first_token_seconds",
    "Time from submitting a generation to the engine until its first token, by model: a cold twin's first "
    "request includes reading its adapter into a LoRA slot.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
PROMPT_TOKENS = Counter("monolith_prompt_tokens", "Prompt tokens submitted to the engine.", registry=REGISTRY)
QUEUE_DEPTH = Gauge(
    "monolith_queue_depth",
    "Real-time requests admitted and not yet producing tokens (the HPA scales on this).",
    registry=REGISTRY,
)
REQUESTS_RUNNING = Gauge("monolith_requests_running", "Requests of every lane producing tokens.", registry=REGISTRY)
LANE_WAITING = Gauge(
    "monolith_lane_waiting", "Requests admitted and not yet producing tokens, by lane.", ["lane"], registry=REGISTRY
)
LANE_RUNNING = Gauge("monolith_lane_running", "Requests producing tokens, by lane.", ["lane"], registry=REGISTRY)
RAG_STEP = Histogram(
    "monolith_rag_step_seconds", "Duration of each RAG step.", ["step"], buckets=_LATENCY_BUCKETS, registry=REGISTRY
)
# The job store is shared by every replica: only the holder of the housekeeping lease counts the backlog and
# the others export 0, so sum() over the pods is the backlog (counted once) and avg() the backlog per replica,
# like SageMaker's ApproximateBacklogSizePerInstance.
ASYNC_BACKLOG = Gauge(
    "monolith_async_backlog",
    "Async jobs queued or running over all replicas; exported by one replica, 0 on the others.",
    registry=REGISTRY,
)
BATCH_BACKLOG = Gauge(
    "monolith_batch_backlog",
    "Batch request lines not answered yet over all replicas' batches; exported by one replica, 0 on the others.",
    registry=REGISTRY,
)
BATCH_LINES = Counter(
    "monolith_batch_lines", "Batch request lines this replica answered (written to a shard's part).", registry=REGISTRY
)
TWIN_SLOT_WAITING = Gauge(
    "monolith_twin_slot_waiting",
    "A twin's generations held back until its adapter gets a LoRA slot (in arrival order: monolith.twin_slots).",
    ["twin"],
    registry=REGISTRY,
)
TWIN_SWAPS = Counter(
    "monolith_twin_swaps",
    "A twin's adapter brought into a LoRA slot for a generation, by where it came from: `host` (vLLM's host-memory "
    "cache) or `disk` (read again: more twins than engine.max_cpu_loras). The warm-up reads each twin once.",
    ["twin", "source"],
    registry=REGISTRY,
)
TWIN_SWAP_FIRST_TOKEN = Histogram(
    "monolith_twin_swap_time_to_first_token_seconds",
    "First-token time of a generation whose twin's adapter had to be brought into a LoRA slot (what a swap "
    "costs), by where it came from.",
    ["source"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
ASYNC_RUNNING = Gauge("monolith_async_running", "Async jobs this replica is running.", registry=REGISTRY)
BACKGROUND_SLOTS = Gauge(
    "monolith_background_slots",
    "Engine slots async jobs and batch lines may hold together now (the adaptive background budget).",
    registry=REGISTRY,
)
BACKGROUND_PREEMPTED = Counter(
    "monolith_background_preempted",
    "Background generations aborted to make room for real-time traffic (paused to resume, or requeued), by lane.",
    ["lane"],
    registry=REGISTRY,
)
READY = Gauge("monolith_ready", "1 when the server is ready for traffic.", registry=REGISTRY)
STORE_UP = Gauge(
    "monolith_store_up",
    "1 while the job store (SQLite or PostgreSQL) answered its last call, 0 while it is unreachable.",
    registry=REGISTRY,
)


class EngineStatsCollector:
    """The engine scheduler's own view, read at scrape time."""

    def __init__(self) -> None:
        self.stats = None

    def collect(self) -> Iterator[Metric]:
        if self.stats is None:
            return
        yield GaugeMetricFamily(
            "monolith_engine_waiting", "Requests waiting in the engine scheduler.", self.stats.waiting
        )
        yield GaugeMetricFamily(
            "monolith_engine_running", "Requests running in the engine scheduler.", self.stats.running
        )
        yield GaugeMetricFamily(
            "monolith_engine_kv_cache_usage", "Fraction of the KV cache in use (0 to 1).", self.stats.kv_cache_usage
        )
        running = GaugeMetricFamily(
            "monolith_twin_running",
            "A twin's requests running in the engine now (its adapter in a slot).",
            labels=["twin"],
        )
        waiting = GaugeMetricFamily(
            "monolith_twin_waiting",
            "A twin's requests waiting in the engine (for a LoRA slot among others).",
            labels=["twin"],
        )
        for twin in self.stats.twins:
            running.add_metric([twin], self.stats.twins_running.get(twin, 0))
            waiting.add_metric([twin], self.stats.twins_waiting.get(twin, 0))
        yield running
        yield waiting
        yield CounterMetricFamily(
            "monolith_engine_prefix_cache_queries",
            "Prompt tokens the engine looked up in its prefix cache.",
            self.stats.prefix_cache_queries,
        )
        yield CounterMetricFamily(
            "monolith_engine_prefix_cache_hits",
            "Prompt tokens found in the prefix cache, not computed again (a resumed generation's own, a shared "
            "system prompt).",
            self.stats.prefix_cache_hits,
        )


ENGINE_STATS = EngineStatsCollector()
REGISTRY.register(ENGINE_STATS)
