"""Brings the services up in the background, so liveness answers while the model loads."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from pathlib import Path

from monolith.api.jobs import render
from monolith.api.state import Phase, ServerState
from monolith.config import Settings
from monolith.engine import Sampling, load_engine
from monolith.generation import Generator, new_request_id
from monolith.jobs.batches import BatchRunner
from monolith.jobs.worker import JobRunner
from monolith.metrics import ENGINE_STATS, READY
from monolith.model_prep import prepare_model
from monolith.rag import NoStore, RagPipeline, RetrievalOff
from monolith.retrieval.embedder import Embedder
from monolith.retrieval.ingest import ingest_file
from monolith.retrieval.reranker import Reranker
from monolith.retrieval.store import VectorStore
from monolith.serving import Services
from monolith.store.batches import BatchStore
from monolith.store.database import Database, open_database
from monolith.store.jobs import JobStore

log = logging.getLogger(__name__)


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


async def _step(state: ServerState, name: str, detail: str, work):
    state.detail = detail
    started = time.perf_counter()
    result = await work
    state.timings_s[name] = round(time.perf_counter() - started, 2)
    log.info("%s done in %.1f s", name, state.timings_s[name])
    return result


async def load_services(state: ServerState, with_jobs: bool = True, retrieval: bool = True) -> None:
    """Fills `state.services` (and starts the async job runner); a failure leaves the phase FAILED.
    retrieval=False (a batch file with no RAG line) skips the embedder, the store and the ingest."""
    settings = state.settings
    started = time.perf_counter()
    try:
        await _step(
            state, "model_prepare", "preparing the model checkpoint", asyncio.to_thread(prepare_model, settings)
        )
        # The engine load runs in a thread; the embedder, the vector store and the job store load beside it.
        engine_task = asyncio.create_task(_step(state, "engine_load", "loading the engine", load_engine(settings)))
        if with_jobs:
            state.database = await _step(
                state, "job_store", "opening the job store", open_database(settings.jobs.database, settings.data_dir)
            )
        loaded = await _load_retrieval(state) if retrieval else None
        engine = await engine_task
        ENGINE_STATS.stats = engine.stats
        generator = Generator(engine, settings)
        await _step(state, "warmup", "running the warm-up generation", _warm_up(generator, settings))
        if loaded is None:
            state.services = Services(generator, RetrievalOff(), NoStore())
        else:
            embedder, store, reranker = loaded
            await asyncio.to_thread(store.check)
            rag = RagPipeline(generator, embedder, store, settings, reranker)
            state.services = Services(generator, rag, store, embedder, reranker)
        if state.database is not None:
            state.jobs, state.batches = start_work(state.services, state.database)
        state.timings_s["time_to_ready"] = round(time.perf_counter() - started, 2)
        state.phase, state.detail = Phase.READY, "ready"
        READY.set(1)
        log.info("ready in %.1f s (%s)", state.timings_s["time_to_ready"], state.timings_s)
    except asyncio.CancelledError:
        raise
    except Exception:
        # Stay alive and say what failed in /health/ready (a crash loop hides it); the exception's text,
        # which may name paths, hosts or users, stays in the log.
        state.phase, state.detail = Phase.FAILED, f"start-up failed during '{state.detail}' (see the server log)"
        log.exception("start-up failed")


async def _load_retrieval(state: ServerState) -> tuple[Embedder, VectorStore, Reranker | None]:
    settings = state.settings
    embedder = await asyncio.to_thread(Embedder, settings.embedder)
    store = await asyncio.to_thread(open_store, settings)
    reranker = await asyncio.to_thread(Reranker, settings.rerank) if settings.rerank.model else None
    ingest = asyncio.to_thread(ingest_sample_if_empty, settings, embedder, store)
    await _step(state, "ingest", "ingesting the sample corpus", ingest)
    return embedder, store, reranker


def replica_name() -> str:
    """How this process signs its leases: the pod's host name, the pid, and a suffix for restarts."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def start_work(services: Services, database: Database) -> tuple[JobRunner, BatchRunner]:
    """The async job runner and the batch runner on the shared store."""
    settings = services.settings
    cfg = settings.jobs
    replica = replica_name()
    log.info("replica %s serves async jobs and batches from %s", replica, database.describe())
    jobs = JobRunner(JobStore(database, replica, cfg.lease_s, cfg.max_runs), services, render)
    files_dir = settings.in_data_dir(settings.batch.files_dir)
    batch_store = BatchStore(database, files_dir, replica, cfg.lease_s, cfg.max_runs)
    batches = BatchRunner(batch_store, services, jobs.slots, cfg)
    jobs.expire_files = lambda: batch_store.expire_files(int(time.time() - settings.batch.file_ttl_s))
    jobs.start()
    batches.start()
    return jobs, batches


async def _warm_up(generator: Generator, settings: Settings) -> None:
    """Shapes like a real RAG request: a short prompt alone left the first user request ~3x slower
    on CPU (16 s instead of 5 s for the helper steps), paying for kernels the warm-up never ran."""
    context = "Deploying a model means loading it, batching requests and streaming tokens. " * 24
    prompts = [
        [{"role": "user", "content": "Hello"}],
        [{"role": "system", "content": context}, {"role": "user", "content": "How do I deploy an LLM?"}],
    ]
    sampling = Sampling(max_tokens=settings.engine.warmup_tokens, temperature=0.0)
    await asyncio.gather(
        *(generator.complete(generator.chat_ids(p), sampling, new_request_id("warmup")) for p in prompts)
    )
