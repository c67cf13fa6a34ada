"""The retrieval pipeline: self-query and expansion on the local LLM, search, fusion, relevance floor, rerank.
What becomes of the sources (the prompt within the token budget) is serving's (`serving.rag`)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from monolith import tracing
from monolith.config import Settings
from monolith.engine import Sampling
from monolith.errors import NotReady
from monolith.generation import Generator
from monolith.metrics import RAG_STEP, exemplar
from monolith.retrieval.authors import AuthorIndex, fold
from monolith.retrieval.embedder import Embedder
from monolith.retrieval.reranker import Reranker
from monolith.retrieval.store import Hit, VectorStore
from monolith.work import Work

T = TypeVar("T")

AUTHOR_CHOICE_PROMPT = (
    "Which of these people does the question below mean: {names}? Answer with one name, or none.\n\nQuestion: {query}"
)
NONE = "none"
EXPANSION_PROMPT = (
    "Write {n} different versions of the question below, to help find relevant documents. "
    "Answer with a JSON array of {n} strings.\n\nQuestion: {query}"
)
# A name is a few tokens.
SELF_QUERY_MAX_TOKENS = 24
# Reciprocal-rank fusion's constant (Cormack et al.): a chunk ranked r-th for one query adds 1 / (60 + r).
RRF_K = 60
# How long the authors the store holds are trusted before being read again (an ingest from another process).
AUTHORS_REFRESH_S = 60.0


@dataclass(frozen=True)
class RagOptions:
    k: int
    max_tokens: int
    temperature: float
    expand: bool
    self_query: bool
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    priority: int = 0  # the answer's order inside its lane (the helper steps keep the lane's own)
    adapter: str | None = None  # the twin whose adapter writes the answer (the helper steps use the base)
    # A twin's author: retrieval reads only their documents, whatever the question names, and never falls back.
    author: str | None = None


@dataclass
class Source:
    collection: str
    author_full_name: str
    platform: str
    link: str
    score: float  # the chunk's best cosine similarity to any of the queries
    content: str


def _normalised(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", fold(text)).split())


_NUMBERING = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*")


def parse_expansions(answer: str, query: str, wanted: int) -> list[str]:
    """The original query first, then up to `wanted` alternatives from the JSON array the model wrote: none
    that repeats the original or another one (case, accents, punctuation and a list number aside)."""
    try:
        items = json.loads(answer)
    except ValueError:  # cut off by the token budget: the original alone
        items = []
    queries, seen = [query], {_normalised(query)}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, str):
            continue
        text = _NUMBERING.sub("", item).strip()
        key = _normalised(text)
        if len(key) < 3 or key in seen:
            continue
        seen.add(key)
        queries.append(text)
        if len(queries) > wanted:
            break
    return queries


def chunk_key(hit: Hit) -> str:
    return hit.payload.get("content", hit.id)


def fuse(ranked: list[list[Hit]]) -> list[Hit]:
    """Reciprocal-rank fusion of each query's hits (best first): a chunk several queries rank well beats one
    a single query ranks first; ties go to the better cosine. Each chunk keeps its best cosine as its score."""
    fused: dict[str, float] = defaultdict(float)
    best: dict[str, Hit] = {}
    for hits in ranked:
        seen: set[str] = set()
        for rank, hit in enumerate(hits, start=1):
            key = chunk_key(hit)
            if key in seen:
                continue
            seen.add(key)
            fused[key] += 1 / (RRF_K + rank)
            if key not in best or hit.score > best[key].score:
                best[key] = hit
    return [best[key] for key in sorted(fused, key=lambda k: (-fused[k], -best[k].score))]


class RagPipeline:
    def __init__(
        self,
        generator: Generator,
        embedder: Embedder,
        store: VectorStore,
        settings: Settings,
        reranker: Reranker | None = None,
    ) -> None:
        self.generator = generator
        self.embedder = embedder
        self.store = store
        self.reranker = reranker
        self.settings = settings
        self._authors: AuthorIndex | None = None
        self._authors_at = 0.0

    async def _timed(
        self,
        step: str,
        timings: dict[str, float],
        awaitable: Awaitable[T],
        attributes: dict[str, Any] | None = None,
        describe: Callable[[T], dict[str, Any]] | None = None,
    ) -> T:
        """One step, timed (its histogram, the answer's timings) and, with tracing on, a span `rag.<step>` with
        `attributes` and what `describe` says of its result."""
        started = time.perf_counter()
        with tracing.step(f"rag.{step}", attributes) as span:
            try:
                result = await awaitable
            finally:
                elapsed = time.perf_counter() - started
                RAG_STEP.labels(step).observe(elapsed, exemplar())
                timings[step] = round(timings.get(step, 0.0) + elapsed * 1000, 1)  # a step may run twice
            if span is not None and describe is not None:
                span.set_attributes(describe(result))
            return result

    async def _ask(self, prompt: str, request_id: str, work: Work, max_tokens: int, structured: dict[str, Any]) -> str:
        """A helper generation, greedy and constrained by the engine to the shape its caller parses; part of the
        request's `work` (its ticket, its lane)."""
        ids = await self.generator.off_loop(self.generator.chat_ids, [{"role": "user", "content": prompt}])
        sampling = Sampling(max_tokens=max_tokens, temperature=0.0, structured=structured)
        return (await self.generator.complete(ids, sampling, request_id, work)).text

    async def author_index(self) -> AuthorIndex:
        """The authors the store holds, read again after AUTHORS_REFRESH_S (an ingest from another process)."""
        if self._authors is None or time.monotonic() - self._authors_at > AUTHORS_REFRESH_S:
            self._authors = AuthorIndex(await self.store.authors_async())
            self._authors_at = time.monotonic()
        return self._authors

    async def self_query(self, query: str, request_id: str, work: Work) -> str | None:
        """The known author the question names; the LLM only chooses when one name fits several authors, and
        then only among them (or none)."""
        match = (await self.author_index()).match(query)
        if match.author or not match.candidates:
            return match.author
        prompt = AUTHOR_CHOICE_PROMPT.format(names=", ".join(match.candidates), query=query)
        choice = await self._ask(
            prompt, f"{request_id}-sq", work, SELF_QUERY_MAX_TOKENS, {"choice": [*match.candidates, NONE]}
        )
        return choice if choice in match.candidates else None

    async def expand(self, query: str, request_id: str, work: Work) -> list[str]:
        wanted = self.settings.rag.expand_queries - 1
        if wanted < 1:
            return [query]
        schema = {
            "type": "array",
            "items": {"type": "string", "minLength": 3, "maxLength": 2 * len(query) + 100},
            "minItems": 1,
            "maxItems": wanted,
        }
        prompt = EXPANSION_PROMPT.format(n=wanted, query=query)
        helper_max_tokens = self.settings.rag.helper_max_tokens
        answer = await self._ask(prompt, f"{request_id}-qe", work, helper_max_tokens, {"json": schema})
        return parse_expansions(answer, query, wanted)

    async def _search(
        self, queries: list[str], limit: int, author: str | None, timings: dict[str, float]
    ) -> list[list[Hit]]:
        vectors = await self._timed("embed", timings, self.embedder.embed_async(queries), {"rag.queries": len(queries)})
        searched = {"db.system.name": "qdrant", "db.system": "qdrant", "db.operation.name": "search"}
        searched |= {"rag.queries": len(queries), "rag.limit": limit, "rag.author_filter": author or ""}
        return await self._timed(
            "search",
            timings,
            self.store.search_async(vectors, limit, author),
            searched,
            lambda ranked: {"rag.hits": sum(len(hits) for hits in ranked)},
        )

    async def _search_first(
        self, query: str, limit: int, author: str | None, fixed: str | None, timings: dict[str, float]
    ) -> tuple[list[list[Hit]], str | None, str | None]:
        """The question's own hits, the author filter kept, and a notice. An author the question named that
        matches nothing is dropped (every author searched instead); a twin's author (`fixed`) is never dropped."""
        ranked = await self._search([query], limit, author, timings)
        if not author or ranked[0]:
            return ranked, author, None
        if fixed:
            return ranked, author, f"nothing by {author} matched; this twin answers from {author}'s documents only"
        ranked = await self._search([query], limit, None, timings)
        return ranked, None, f"nothing by {author} matched; searched every author instead"

    async def retrieve(
        self, query: str, opts: RagOptions, request_id: str, work: Work, timings: dict[str, float]
    ) -> tuple[list[Source], list[str], str | None, str | None]:
        """(sources, queries, author filter, notice). The original query is searched while the expansion is
        still being generated; the alternatives' hits are fused with its own by reciprocal rank. The helper
        generations are part of the request's `work`."""
        asked = self.self_query(query, request_id, work) if opts.self_query and not opts.author else None
        author = opts.author
        if asked:
            author = await self._timed("self_query", timings, asked, describe=lambda a: {"rag.author": a or ""})
        expanding = self.expand(query, request_id, work) if opts.expand else None
        expansion = None
        if expanding:
            counted = self._timed("expand", timings, expanding, describe=lambda queries: {"rag.queries": len(queries)})
            expansion = asyncio.create_task(counted)
        notice = None
        try:
            limit = self.settings.rerank.candidates if self.reranker else max(opts.k, self.settings.rag.candidates)
            ranked, author, notice = await self._search_first(query, limit, author, opts.author, timings)
            queries = await expansion if expansion else [query]
        except BaseException:
            if expansion:
                expansion.cancel()
            raise
        if len(queries) > 1:
            ranked += await self._search(queries[1:], limit, author, timings)
        hits = fuse(ranked)
        floor = self.settings.rag.min_score
        relevant = [h for h in hits if h.score >= floor]
        if hits and not relevant:
            notice = f"no source passed the relevance floor (rag.min_score {floor}); answered without sources"
        best = max((h.score for h in hits), default=0.0)
        verdict = {"rag.hits": len(hits), "rag.relevant": len(relevant), "rag.min_score": floor, "rag.best_score": best}
        tracing.event("rag.relevance_floor", verdict)
        if self.reranker and relevant:
            scores = await self._timed(
                "rerank",
                timings,
                self.reranker.scores_async(query, [chunk_key(h) for h in relevant]),
                {"rag.candidates": len(relevant)},
                lambda scores: {"rag.best_rerank_score": max(scores, default=0.0)},
            )
            order = sorted(zip(relevant, scores, strict=True), key=lambda pair: pair[1], reverse=True)
            relevant = [h for h, _ in order]
        sources = [
            Source(
                collection=h.collection,
                author_full_name=h.payload.get("author_full_name", ""),
                platform=h.payload.get("platform", ""),
                link=h.payload.get("link", ""),
                score=round(h.score, 4),
                content=h.payload.get("content", ""),
            )
            for h in relevant[: opts.k]
        ]
        return sources, queries, author, notice


class Retrieval(Protocol):
    """What serving needs of RAG: sources for a question. A protocol, not a union: Litestar's signature model,
    which sees `Services`, cannot take a union of two classes."""

    async def retrieve(
        self, query: str, opts: RagOptions, request_id: str, work: Work, timings: dict[str, float]
    ) -> tuple[list[Source], list[str], str | None, str | None]: ...


class RetrievalOff:
    """In place of the pipeline where no retrieval was loaded (a batch file with no RAG line): a RAG
    request that still arrives gets a clear 503 instead of an embedder loaded for nothing."""

    async def retrieve(
        self, query: str, opts: RagOptions, request_id: str, work: Work, timings: dict[str, float]
    ) -> tuple[list[Source], list[str], str | None, str | None]:
        raise NotReady("retrieval is not loaded in this run (no line of the batch file asked for RAG)")
