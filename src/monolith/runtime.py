"""The composition root: Settings -> the loaded services, the job and batch runners, and their lifecycle (loading,
ready, draining, failed). No HTTP here: `monolith serve` wraps a Runtime in the app (api/), `monolith batch`,
`monolith eval` and the benchmark use one as it is."""

from __future__ import annotations

import asyncio
import enum
import gc
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from monolith.admission import REALTIME, Admission
from monolith.config import ConfigError, Settings
from monolith.engine import Sampling
from monolith.engine.adapters import Adapter, check_adapters
from monolith.errors import NotReady
from monolith.generation import Generator, new_request_id
from monolith.jobs.batches import BatchRunner
from monolith.jobs.worker import JobRunner
from monolith.metrics import ENGINE_STATS, READY
from monolith.model_prep import prepare_model
from monolith.retrieval.embedder import Embedder
from monolith.retrieval.ingest import ingest_file
from monolith.retrieval.pipeline import RagPipeline, RetrievalOff
from monolith.retrieval.reranker import Reranker
from monolith.retrieval.store import VectorStore
from monolith.scheduling import BackgroundBudget
from monolith.serving import Services
from monolith.store.batches import BatchStore
from monolith.store.database import Database, open_database
from monolith.store.files import FileStore
from monolith.store.jobs import JobStore
from monolith.work import Work

log = logging.getLogger(__name__)
T = TypeVar("T")
ENGINE_WATCH_S = 0.5  # how often the engine's liveness is read once ready


class Phase(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"


@dataclass
class Runtime:
    """One process's services and work, from loading to shutdown; liveness answers while it loads."""

    settings: Settings
    phase: Phase = Phase.LOADING
    detail: str = "loading the model"
    services: Services | None = None
    jobs: JobRunner | None = None
    batches: BatchRunner | None = None
    database: Database | None = None
    # The one admission queue of this process (the engine is one per process too), and the background budget that
    # paces async jobs and batch lines behind real-time traffic (built with the job store, whose work it paces).
    admission: Admission = field(init=False)
    budget: BackgroundBudget | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    # Why this process must exit to be restarted (the engine died); the server exits non-zero when it is set.
    fatal: str | None = None
    on_fatal: Callable[[], None] | None = None
    _watcher: asyncio.Task | None = None

    def __post_init__(self) -> None:
        self.admission = Admission(self.settings.admission.max_waiting, self.settings.admission.max_retry_after_s)

    @property
    def draining(self) -> bool:
        return self.phase is Phase.DRAINING

    def require_services(self) -> Services:
        """Raises NotReady (503 + Retry-After) while loading, draining or after a failed start."""
        if self.phase is Phase.READY and self.services is not None:
            return self.services
        if self.phase is Phase.DRAINING:
            raise NotReady("the server is shutting down; retry on another replica", retry_after=2)
        raise NotReady(f"the server is not ready: {self.detail}", retry_after=5)

    def ready(self, services: Services) -> None:
        self.services = services
        self.phase, self.detail = Phase.READY, "ready"
        READY.set(1)
        self._watcher = asyncio.create_task(self._watch_engine(services.generator))

    def begin_drain(self) -> None:
        """Readiness and new work turn 503; queued async jobs stay queued for the next start."""
        self.phase, self.detail = Phase.DRAINING, "draining: finishing in-flight requests"
        READY.set(0)
        if self.jobs is not None:
            self.jobs.pause()
        if self.batches is not None:
            self.batches.pause()

    def in_flight(self) -> int:
        """Real-time requests admitted and not finished, plus running async jobs."""
        return self.admission.in_flight(REALTIME) + (len(self.jobs.running) if self.jobs is not None else 0)

    async def load(self, with_jobs: bool = True, retrieval: bool = True) -> None:
        """Fills `services` (and starts the job and batch runners); a failure leaves the phase FAILED.
        retrieval=False (a batch file with no RAG line) skips the embedder, the store and the ingest."""
        settings = self.settings
        started = time.perf_counter()
        try:
            await self._step(
                "model_prepare", "preparing the model checkpoint", asyncio.to_thread(prepare_model, settings)
            )
            # A bad twin stops start-up here, named, before the engine spends its time loading.
            adapters = await self._step(
                "twins", "checking the twins' adapters", asyncio.to_thread(check_adapters, settings)
            )
            # vLLM first, alone: see import_engine.
            await self._step("engine_import", "importing the engine", asyncio.to_thread(import_engine, settings))
            # The engine load runs in a thread; the embedder, the vector store and the job store load beside it.
            engine_task = asyncio.create_task(
                self._step("engine_load", "loading the engine", load_engine(settings, adapters))
            )
            if with_jobs:
                opening = open_database(settings.store.database, settings.data_dir, settings.store.timeout_s)
                self.database = await self._step("job_store", "opening the job store", opening)
            loaded = await self.load_retrieval() if retrieval else None
            engine = await engine_task
            ENGINE_STATS.stats = engine.stats
            generator = Generator(engine, settings, self.admission)
            await self._step("warmup", "running the warm-up generation", warm_up(generator, settings))
            services = await self.build_services(generator, loaded)
            if self.database is not None:
                self.budget = BackgroundBudget(settings, self.admission)
                self.jobs, self.batches = start_work(services, self.database, self.budget)
            freeze_startup_heap()
            self.timings_s["time_to_ready"] = round(time.perf_counter() - started, 2)
            self.ready(services)
            log.info("ready in %.1f s (%s)", self.timings_s["time_to_ready"], self.timings_s)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Stay alive and say what failed in /health/ready (a crash loop hides it); the exception's text,
            # which may name paths, hosts or users, stays in the log.
            self.phase, self.detail = Phase.FAILED, f"start-up failed during '{self.detail}' (see the server log)"
            log.exception("start-up failed")

    async def _watch_engine(self, generator: Generator) -> None:
        while not generator.engine_stopped():
            await asyncio.sleep(ENGINE_WATCH_S)
        self.stop_for_good("the inference engine stopped")

    def stop_for_good(self, why: str) -> None:
        """What `vllm serve` does when its engine dies: stop pretending. Readiness and new work turn 503 at once,
        the runners claim nothing more (work in hand goes back to the queue, never failed: see jobs.worker), and
        the server exits non-zero, so Kubernetes or SageMaker start a fresh process."""
        if self.fatal is not None:
            return
        self.fatal = why
        self.phase, self.detail = Phase.FAILED, f"{why}; the process exits to be restarted"
        READY.set(0)
        if self.jobs is not None:
            self.jobs.pause()
        if self.batches is not None:
            self.batches.pause()
        log.error("%s: readiness is 503 and the process exits to be restarted", why)
        if self.on_fatal is not None:
            self.on_fatal()

    async def close(self) -> None:
        """Work in hand goes back to the shared store (another replica, or the next start, takes it up)."""
        if self._watcher is not None:
            self._watcher.cancel()
        if self.fatal is None:
            self.phase, self.detail = Phase.DRAINING, "shutting down"
        READY.set(0)
        if self.batches is not None:
            await self.batches.stop()
        if self.jobs is not None:
            await self.jobs.stop()
        if self.budget is not None:
            await self.budget.stop()
        if self.database is not None:
            await self.database.close()
        if self.services is not None:
            await self.services.aclose()
        gc.unfreeze()  # what start-up built can go now (a process that loads again, as tests do, would keep it)

    async def _step(self, name: str, detail: str, work: Awaitable[T]) -> T:
        self.detail = detail
        started = time.perf_counter()
        result = await work
        self.timings_s[name] = round(time.perf_counter() - started, 2)
        log.info("%s done in %.1f s", name, self.timings_s[name])
        return result

    async def build_services(
        self, generator: Generator, loaded: tuple[Embedder, VectorStore, Reranker | None] | None
    ) -> Services:
        """What the routes serve with: the generator, and RAG over what load_retrieval loaded (None: off)."""
        if loaded is None:
            return Services(generator, RetrievalOff())
        embedder, store, reranker = loaded
        await asyncio.to_thread(store.check)
        rag = RagPipeline(generator, embedder, store, self.settings, reranker)
        return Services(generator, rag, store, embedder, reranker)

    async def load_retrieval(self) -> tuple[Embedder, VectorStore, Reranker | None]:
        """The embedder, the vector store (the sample corpus ingested into an empty one) and the reranker."""
        settings = self.settings
        embedder = await asyncio.to_thread(Embedder, settings.embedder)
        store = await asyncio.to_thread(open_store, settings)
        reranker = await asyncio.to_thread(Reranker, settings.rerank) if settings.rerank.model else None
        ingest = asyncio.to_thread(ingest_sample_if_empty, settings, embedder, store)
        await self._step("ingest", "ingesting the sample corpus", ingest)
        return embedder, store, reranker


# How a Runtime is brought up: Runtime.load by default; tests and the benchmark's split pass their own.
Loader = Callable[[Runtime], Awaitable[None]]


def freeze_startup_heap() -> None:
    """What start-up built (the libraries, the tokenizer, the embedder, the engine's client) lives as long as the
    process. Frozen, Python's full collections no longer walk it: unfrozen, each held the event loop (and every
    request) for 0.4-0.7 s here, about once a minute while a backlog ran, and took that CPU from the engine on a
    small box. `vllm serve` freezes its own start-up heap the same way (vllm.utils.gc_utils.freeze_gc_heap);
    close() unfreezes it."""
    gc.collect()
    gc.freeze()


def import_engine(settings: Settings) -> None:
    """vLLM and sentence-transformers both import transformers. From two threads at once (the engine's load and
    the embedder's), Python's guard against a deadlock between two modules' import locks can hand one thread a
    module still half imported, and the start-up fails ("ImportError: cannot import name 'PreTrainedConfig' from
    'transformers'", once in a bench run on a fresh data dir). So vLLM is imported before the two loads start;
    the time to ready is the same, the engine's load being the longer of the two either way."""
    from monolith.engine.vllm_engine import import_vllm

    import_vllm(settings)


async def load_engine(settings: Settings, adapters: dict[str, Adapter]) -> Any:
    """Building the engine blocks for tens of seconds; keep the event loop answering health checks."""
    from monolith.engine.vllm_engine import VllmEngine

    return await asyncio.to_thread(VllmEngine, settings, adapters)


def open_store(settings: Settings) -> VectorStore:
    return VectorStore(settings.qdrant, settings.in_data_dir(settings.qdrant.path))


def ingest_sample_if_empty(settings: Settings, embedder: Embedder, store: VectorStore) -> None:
    """First start of the embedded default: an empty local store gets the sample corpus."""
    corpus = settings.ingest.sample_corpus
    if not corpus or settings.qdrant.url or any(store.count(c) for c in store.collections):
        return
    path = Path(corpus)
    if not path.exists():
        log.warning("sample corpus %s not found; the store stays empty", path)
        return
    report = ingest_file(path, embedder, store, settings.ingest)
    log.info("ingested the sample corpus: %d documents, %d chunks", report.documents, report.chunks)


def replica_name() -> str:
    """How this process signs its leases: the pod's host name, the pid, and a suffix for restarts."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def start_work(services: Services, database: Database, budget: BackgroundBudget) -> tuple[JobRunner, BatchRunner]:
    """The async job runner and the batch runner on the shared store, paced by `budget` (started here)."""
    settings = services.settings
    cfg = settings.store
    replica = replica_name()
    log.info("replica %s serves async jobs and batches from %s", replica, database.describe())
    files = FileStore(database, settings.in_data_dir(settings.files.dir))
    jobs = JobRunner(JobStore(database, replica, cfg.lease_s, cfg.max_runs), services, budget)
    batch_store = BatchStore(database, files, replica, cfg.lease_s, cfg.max_runs)
    batches = BatchRunner(batch_store, services, budget, cfg, settings.batch)
    jobs.housekeeping.expire_files = lambda: files.expire_files(int(time.time() - settings.files.ttl_s))
    jobs.housekeeping.batch_backlog = batch_store.lines_waiting
    budget.start()
    jobs.start()
    batches.start()
    return jobs, batches


async def warm_up(generator: Generator, settings: Settings) -> None:
    """Shapes like a real RAG request: a short prompt alone left the first user request ~3x slower
    on CPU (16 s instead of 5 s for the helper steps), paying for kernels the warm-up never ran."""
    context = "Deploying a model means loading it, batching requests and streaming tokens. " * 24
    prompts = [
        [{"role": "user", "content": "Hello"}],
        [{"role": "system", "content": context}, {"role": "user", "content": "How do I deploy an LLM?"}],
    ]
    sampling = Sampling(max_tokens=settings.engine.warmup_tokens, temperature=0.0)
    runs = [generator.complete(generator.chat_ids(p), sampling, new_request_id("warmup"), Work()) for p in prompts]
    if settings.admission.max_waiting >= len(prompts):
        await asyncio.gather(*runs)
    else:  # each is admitted like a real-time request: with fewer waiting places, one after the other
        for run in runs:
            await run
    for name in settings.twins:  # the engine reads each adapter now: one it cannot load fails the start, named
        try:
            await generator.complete(
                generator.chat_ids(prompts[0]), replace(sampling, adapter=name), new_request_id("warmup"), Work()
            )
        except Exception as exc:
            raise ConfigError(f"twins.{name}: the engine could not load the adapter: {exc}") from exc
