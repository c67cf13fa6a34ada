"""The RAG pipeline: self-query and expansion on the local LLM, search, rerank, context budget, prompt."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from monolith.config import Settings
from monolith.engine import Sampling
from monolith.errors import BadRequest, NotReady
from monolith.generation import Generator
from monolith.metrics import RAG_STEP
from monolith.retrieval.embedder import Embedder
from monolith.retrieval.reranker import Reranker
from monolith.retrieval.store import Hit, VectorStore

T = TypeVar("T")

EXPANSION_SEPARATOR = "#next-question#"
SYSTEM_PROMPT = (
    "You are a writer answering in your own voice. Answer the user's question using the context below, "
    "which comes from your own articles, posts and code. If the context does not cover it, say so.\n\nContext:\n"
)
SELF_QUERY_PROMPT = (
    "Does the question below name a person? If it does, answer with that person's full name only. "
    "If it does not, answer NONE.\n\nQuestion: {query}"
)
EXPANSION_PROMPT = (
    "Write {n} different versions of the question below, to help find relevant documents. "
    f"Put '{EXPANSION_SEPARATOR}' between the versions and write nothing else.\n\nQuestion: {{query}}"
)
# A name is a few tokens; a short budget also stops a chatty small model early.
SELF_QUERY_MAX_TOKENS = 24
# Room for the template's own tokens around the context, which per-chunk counts do not see.
_TEMPLATE_MARGIN = 16


@dataclass(frozen=True)
class RagOptions:
    k: int
    max_tokens: int
    temperature: float
    expand: bool
    self_query: bool


@dataclass
class Source:
    collection: str
    author_full_name: str
    platform: str
    link: str
    score: float
    content: str


@dataclass
class RagPrompt:
    prompt_ids: list[int]
    sources: list[Source]
    queries: list[str]
    author: str | None
    timings_ms: dict[str, float] = field(default_factory=dict)


# Two to four capitalised words: "Tomás Reyes", "Ada Lindqvist"; not "LLM" or a sentence's first word.
_NAME = re.compile(r"\b[^\W\d_][^\W\d_]*(?:[-'’][^\W\d_]+)?(?:\s+[^\W\d_][^\W\d_]*(?:[-'’][^\W\d_]+)?){1,3}\b")


def parse_author(answer: str, query: str) -> str | None:
    """The longest capitalised name in the answer that the query itself contains, spelled as in the query.

    Small models wrap the name in chatter ("The answer is: Tomás Reyes.") and invent names freely, so
    only a name that really appears in the query is accepted.
    """
    if not answer.strip() or answer.strip().upper().startswith("NONE"):
        return None
    found: list[str] = []
    for match in _NAME.finditer(answer):
        words = match.group(0).split()
        # every sub-run of 2+ capitalised words is a candidate
        for i in range(len(words)):
            for j in range(i + 2, len(words) + 1):
                run = words[i:j]
                if all(w[0].isupper() and any(c.islower() for c in w) for w in run):
                    found.append(" ".join(run))
    for name in sorted(set(found), key=len, reverse=True):
        hit = re.search(r"\b" + r"\s+".join(map(re.escape, name.split())) + r"\b", query)
        if hit:
            return " ".join(hit.group(0).split())
    return None


def parse_expansions(answer: str, query: str, wanted: int) -> list[str]:
    """The original query first, then up to `wanted` distinct alternatives that follow the format."""
    queries = [query]
    for part in answer.split(EXPANSION_SEPARATOR):
        candidate = part.strip()
        if not candidate or len(candidate) > 2 * len(query) + 200 or "\n\n" in candidate:
            continue
        if candidate.lower() not in (q.lower() for q in queries):
            queries.append(candidate)
        if len(queries) > wanted:
            break
    return queries


def deduplicate(hits: list[Hit]) -> list[Hit]:
    """One hit per chunk (several queries find the same one), keeping its best score."""
    best: dict[str, Hit] = {}
    for hit in hits:
        key = hit.payload.get("content", hit.id)
        if key not in best or hit.score > best[key].score:
            best[key] = hit
    return sorted(best.values(), key=lambda h: h.score, reverse=True)


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

    async def _timed(self, step: str, timings: dict[str, float], work: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            return await work
        finally:
            elapsed = time.perf_counter() - started
            RAG_STEP.labels(step).observe(elapsed)
            timings[step] = round(elapsed * 1000, 1)

    async def _ask(self, prompt: str, request_id: str, max_tokens: int) -> str:
        ids = await self.generator.off_loop(self.generator.chat_ids, [{"role": "user", "content": prompt}])
        sampling = Sampling(max_tokens=max_tokens, temperature=0.0)
        return (await self.generator.complete(ids, sampling, request_id)).text

    async def self_query(self, query: str, request_id: str) -> str | None:
        return parse_author(
            await self._ask(SELF_QUERY_PROMPT.format(query=query), f"{request_id}-sq", SELF_QUERY_MAX_TOKENS), query
        )

    async def expand(self, query: str, request_id: str) -> list[str]:
        wanted = self.settings.rag.expand_queries - 1
        if wanted < 1:
            return [query]
        prompt = EXPANSION_PROMPT.format(n=wanted, query=query)
        return parse_expansions(
            await self._ask(prompt, f"{request_id}-qe", self.settings.rag.helper_max_tokens), query, wanted
        )

    async def retrieve(self, query: str, opts: RagOptions, request_id: str, timings: dict[str, float]):
        """Self-query and expansion run side by side on the engine; then one embedding call, then search."""

        async def nothing() -> None:
            return None

        author_task = (
            self._timed("self_query", timings, self.self_query(query, request_id)) if opts.self_query else nothing()
        )
        expand_task = self._timed("expand", timings, self.expand(query, request_id)) if opts.expand else nothing()
        author, expanded = await asyncio.gather(author_task, expand_task)
        queries = expanded or [query]
        vectors = await self._timed("embed", timings, self.embedder.embed_async(queries))
        limit = self.settings.rerank.candidates if self.reranker else opts.k
        hits = deduplicate(await self._timed("search", timings, self.store.search_async(vectors, limit, author)))
        if self.reranker and hits:
            scores = await self._timed(
                "rerank", timings, self.reranker.scores_async(query, [h.payload.get("content", "") for h in hits])
            )
            hits = [Hit(h.id, h.collection, s, h.payload) for h, s in zip(hits, scores, strict=True)]
            hits.sort(key=lambda h: h.score, reverse=True)
        sources = [
            Source(
                collection=h.collection,
                author_full_name=h.payload.get("author_full_name", ""),
                platform=h.payload.get("platform", ""),
                link=h.payload.get("link", ""),
                score=round(h.score, 4),
                content=h.payload.get("content", ""),
            )
            for h in hits[: opts.k]
        ]
        return sources, queries, author

    def build_prompt(
        self, messages: list[dict[str, str]], sources: list[Source], max_tokens: int, param: str
    ) -> tuple[list[int], list[Source]]:
        """Context chunks, best first, as many as fit in max_model_len - max_tokens, counted in tokens."""
        bare = self.generator.chat_ids(_with_context(messages, ""))
        self.generator.check_fits(bare, max_tokens, param)
        budget = self.generator.max_model_len - max_tokens - len(bare) - _TEMPLATE_MARGIN
        blocks: list[str] = []
        used: list[Source] = []
        for i, source in enumerate(sources, start=1):
            block = f"[{i}] {source.author_full_name} ({source.platform}): {source.content}\n"
            cost = self.generator.count_tokens(block)
            if cost > budget:
                if budget > 32:  # a useful fraction of the chunk still fits: cut it to the budget
                    ids = self.generator.engine.tokenizer.encode(block, add_special_tokens=False)[:budget]
                    blocks.append(self.generator.engine.tokenizer.decode(ids))
                    used.append(source)
                break
            blocks.append(block)
            used.append(source)
            budget -= cost
        ids = self.generator.chat_ids(_with_context(messages, "".join(blocks)))
        self.generator.check_fits(ids, max_tokens, param)
        return ids, used

    async def prepare(
        self, messages: list[dict[str, str]], opts: RagOptions, request_id: str, param: str = "query"
    ) -> RagPrompt:
        query = messages[-1]["content"].strip()
        if not query:
            raise BadRequest("the query is empty", param=param)
        timings: dict[str, float] = {}
        sources, queries, author = await self.retrieve(query, opts, request_id, timings)
        started = time.perf_counter()
        ids, used = await self.generator.off_loop(self.build_prompt, messages, sources, opts.max_tokens, param)
        timings["prompt"] = round((time.perf_counter() - started) * 1000, 1)
        return RagPrompt(ids, used, queries, author, timings)


def _with_context(messages: list[dict[str, str]], context: str) -> list[dict[str, str]]:
    """The retrieved context goes into the system message, ahead of any system text the caller sent."""
    system = SYSTEM_PROMPT + (context or "(no context found)\n")
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{system}\n{messages[0]['content']}"}, *messages[1:]]
    return [{"role": "system", "content": system}, *messages]


class Retrieval(Protocol):
    """What routes need of RAG. A protocol, not a union: Litestar's signature model, which sees
    `Services`, cannot take a union of two classes."""

    async def prepare(
        self, messages: list[dict[str, str]], opts: RagOptions, request_id: str, param: str = "query"
    ) -> RagPrompt: ...


class RetrievalOff:
    """In place of the pipeline where no retrieval was loaded (a batch file with no RAG line): a RAG
    request that still arrives gets a clear 503 instead of an embedder loaded for nothing."""

    async def prepare(
        self, messages: list[dict[str, str]], opts: RagOptions, request_id: str, param: str = "query"
    ) -> RagPrompt:
        raise NotReady("retrieval is not loaded in this run (no line of the batch file asked for RAG)")


class NoStore:
    def close(self) -> None:
        pass
