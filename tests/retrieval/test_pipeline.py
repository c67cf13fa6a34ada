"""The retrieval half of the RAG pipeline with the real embedder and Qdrant local mode over the sample corpus:
the author filter comes from the authors the store holds, a filter that finds nothing falls back to every
author, expansions are fused by reciprocal rank, and the relevance floor leaves an off-topic question
without sources. (The helper generations need the engine: tests/api covers them.)"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from monolith.admission import Admission
from monolith.config import IngestSettings, Settings
from monolith.generation import Generator
from monolith.retrieval.authors import AuthorIndex
from monolith.retrieval.embedder import Embedder
from monolith.retrieval.ingest import ingest_file
from monolith.retrieval.pipeline import RagOptions, RagPipeline
from monolith.retrieval.store import VectorStore
from monolith.serving.rag import NO_CONTEXT, prepare_rag
from monolith.serving.services import Services
from monolith.work import Work

SAMPLE = Path(__file__).resolve().parents[2] / "corpus" / "sample.jsonl"


def options(**kw: object) -> RagOptions:
    return RagOptions(**{"k": 4, "max_tokens": 16, "temperature": 0.0, "expand": False, "self_query": True, **kw})


@pytest.fixture
def ingested(embedder: Embedder, store: VectorStore) -> VectorStore:
    ingest_file(SAMPLE, embedder, store, IngestSettings())
    return store


def pipeline(tokenizer, settings: Settings, embedder: Embedder, store: VectorStore, **rag: object) -> RagPipeline:
    configured = settings.model_copy(update={"rag": settings.rag.model_copy(update=rag)})
    engine = SimpleNamespace(tokenizer=tokenizer, max_model_len=2048)  # the prompt's tokenizer, no generation
    return RagPipeline(Generator(engine, configured, Admission()), embedder, store, configured)  # type: ignore[arg-type]


def ask(rag: RagPipeline, question: str, **kw: object):
    return prepare_rag(
        Services(rag.generator, rag), [{"role": "user", "content": question}], options(**kw), "req-test", Work()
    )


async def test_the_filter_is_an_author_the_store_holds_however_the_question_writes_it(
    tokenizer, settings: Settings, embedder: Embedder, ingested: VectorStore
) -> None:
    rag = pipeline(tokenizer, settings, embedder, ingested)
    for question in ("what does tomas reyes say about reranking?", "Reyes's view on reranking"):
        prepared = await ask(rag, question)
        assert prepared.author == "Tomás Reyes" and prepared.notice is None
        assert prepared.sources and {s.author_full_name for s in prepared.sources} == {"Tomás Reyes"}
    unknown = await ask(rag, "What does Maria Schmidt say about reranking?")
    assert unknown.author is None and len({s.author_full_name for s in unknown.sources}) >= 1


async def test_a_filter_that_finds_nothing_falls_back_to_every_author_and_says_so(
    tokenizer, settings: Settings, embedder: Embedder, ingested: VectorStore
) -> None:
    rag = pipeline(tokenizer, settings, embedder, ingested)
    # The cached authors still name one whose writing has gone from the store since.
    rag._authors, rag._authors_at = AuthorIndex([*ingested.authors(), "Ghost Writer"]), time.monotonic()
    prepared = await ask(rag, "What does Ghost Writer think about continuous batching?")
    assert prepared.author is None and "nothing by Ghost Writer" in (prepared.notice or "")
    assert {s.link.rsplit("/", 1)[-1] for s in prepared.sources[:2]} & {"jonas-vllm", "jonas-post-batch"}


async def test_alternative_queries_are_fused_with_the_original(
    tokenizer, settings: Settings, embedder: Embedder, ingested: VectorStore
) -> None:
    rag = pipeline(tokenizer, settings, embedder, ingested)
    query = "How can one box serve many users at once?"
    plain = await ask(rag, query, self_query=False)

    async def expand(q: str, request_id: str, work: Work) -> list[str]:
        return [q, "continuous batching and PagedAttention in vLLM"]

    rag.expand = expand  # type: ignore[method-assign]  # what the LLM would write, without the LLM
    expanded = await ask(rag, query, self_query=False, expand=True)
    assert expanded.queries == [query, "continuous batching and PagedAttention in vLLM"]
    assert any(s.link.endswith("jonas-vllm") for s in expanded.sources)
    assert [s.link for s in expanded.sources] != [s.link for s in plain.sources]


async def test_below_the_relevance_floor_there_are_no_sources_and_the_prompt_says_so(
    tokenizer, settings: Settings, embedder: Embedder, ingested: VectorStore
) -> None:
    rag = pipeline(tokenizer, settings, embedder, ingested, min_score=0.3)
    off_topic = await ask(rag, "What is the best recipe for sourdough bread?", self_query=False)
    assert off_topic.sources == [] and "relevance floor" in (off_topic.notice or "")
    assert NO_CONTEXT.strip() in tokenizer.decode(off_topic.prompt_ids)
    on_topic = await ask(rag, "PagedAttention", self_query=False)
    assert on_topic.sources and all(s.score >= 0.3 for s in on_topic.sources) and on_topic.notice is None
