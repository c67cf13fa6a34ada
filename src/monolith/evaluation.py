"""`monolith eval`: the RAG pipeline measured on a labelled question set, in several modes side by side.

Each question names the sample-corpus documents that answer it (none for an unanswerable one) and the author
whose filter it calls for. Every mode answers every question through the real pipeline (the engine for the
helper steps, the embedder, Qdrant in local mode over the sample corpus) with `max_tokens: 1`, so the latency
is the pipeline's, not the answer's. The modes run interleaved, question by question, each going first in turn,
so that a drift in the machine's speed, and the cold prefix cache the first call of a question meets, land on
all of them alike.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monolith.generation import new_request_id
from monolith.protocol.rag import RagRequest
from monolith.serving import Services, plan_rag, run_rag

KINDS = ("paraphrase", "keyword", "author", "multihop", "unanswerable")
# The modes a run compares: request fields over the server's defaults.
MODES: dict[str, dict[str, Any]] = {
    "plain": {"expand": False, "self_query": False},
    "self_query": {"expand": False, "self_query": True},
    "expand": {"expand": True, "self_query": True},
    "default": {},
}


@dataclass(frozen=True)
class Question:
    id: str
    kind: str
    question: str
    relevant: list[str]
    author: str | None

    @property
    def answerable(self) -> bool:
        return bool(self.relevant)


@dataclass
class Outcome:
    """One question in one mode."""

    question: Question
    retrieved: list[str]  # document ids, best first
    top_score: float | None
    author_filter: str | None
    seconds: float
    steps_ms: dict[str, float]
    queries: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def hit(self) -> bool:
        return any(doc in self.question.relevant for doc in self.retrieved)

    @property
    def reciprocal_rank(self) -> float:
        return next((1 / (i + 1) for i, doc in enumerate(self.retrieved) if doc in self.question.relevant), 0.0)

    @property
    def recall(self) -> float:
        found = set(self.retrieved) & set(self.question.relevant)
        return len(found) / len(self.question.relevant) if self.question.relevant else 0.0


def load_questions(path: Path) -> list[Question]:
    questions = [Question(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    unknown = {q.kind for q in questions} - set(KINDS)
    if unknown:
        raise ValueError(f"unknown question kinds {unknown}")
    return questions


def document_ids(corpus: Path) -> dict[str, str]:
    """link -> document id: a source names its link, the labels name documents."""
    return {doc["link"]: doc["id"] for doc in map(json.loads, corpus.read_text().splitlines()) if doc}


async def ask(services: Services, question: Question, mode: dict[str, Any], k: int, links: dict[str, str]) -> Outcome:
    request = RagRequest(query=question.question, k=k, max_tokens=1, temperature=0.0, **mode)
    started = time.perf_counter()
    response = await run_rag(services, plan_rag(services, request), new_request_id("eval"))
    seconds = time.perf_counter() - started
    retrieved = list(dict.fromkeys(links.get(s.link, s.link) for s in response.sources))
    top = max((s.score for s in response.sources), default=None)
    notes = [response.notice] if getattr(response, "notice", None) else []
    return Outcome(
        question, retrieved, top, response.author_filter, seconds, response.timings_ms, response.queries, notes
    )


def mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    answerable = [o for o in outcomes if o.question.answerable]
    unanswerable = [o for o in outcomes if not o.question.answerable]
    naming = [o for o in outcomes if o.question.author]
    nameless = [o for o in outcomes if not o.question.author]
    steps: dict[str, list[float]] = defaultdict(list)
    for o in outcomes:
        for step, ms in o.steps_ms.items():
            steps[step].append(ms)
    by_kind = {
        kind: {"hit": mean([float(o.hit) for o in group]), "mrr": mean([o.reciprocal_rank for o in group])}
        for kind in KINDS
        if (group := [o for o in answerable if o.question.kind == kind])
    }
    return {
        "questions": len(outcomes),
        "hit_at_k": mean([float(o.hit) for o in answerable]),
        "mrr_at_k": mean([o.reciprocal_rank for o in answerable]),
        "recall_at_k": mean([o.recall for o in answerable]),
        "answerable_without_sources": sum(1 for o in answerable if not o.retrieved),
        "author_filter_correct": sum(1 for o in naming if o.author_filter == o.question.author),
        "author_questions": len(naming),
        "no_filter_when_nobody_named": mean([float(o.author_filter is None) for o in nameless]),
        "unanswerable_without_sources": mean([float(not o.retrieved) for o in unanswerable]),
        "seconds_mean": mean([o.seconds for o in outcomes]),
        "seconds_p50": round(statistics.median(o.seconds for o in outcomes), 4) if outcomes else None,
        "step_ms_mean": {step: mean(values) for step, values in sorted(steps.items())},
        "top_score_answerable": [o.top_score for o in answerable if o.top_score is not None],
        "top_score_unanswerable": [o.top_score for o in unanswerable if o.top_score is not None],
        "by_kind": by_kind,
    }


def repeated_ngram_share(texts: list[str], n: int = 8) -> float:
    """Share of texts in which some run of n words occurs twice: the loop a small model falls into."""

    def loops(text: str) -> bool:
        words = text.lower().split()
        grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        return any(count > 1 for count in grams.values())

    return round(sum(map(loops, texts)) / len(texts), 4) if texts else 0.0


async def answers(services: Services, questions: list[Question], max_tokens: int) -> list[str]:
    """Full answers with the server's default sampling, for the loop measurement."""
    texts = []
    for question in questions:
        request = RagRequest(query=question.question, max_tokens=max_tokens)
        texts.append((await run_rag(services, plan_rag(services, request), new_request_id("eval"))).answer)
    return texts


async def evaluate(
    services: Services,
    questions: list[Question],
    corpus: Path,
    modes: list[str],
    k: int,
    answer_questions: int,
    answer_tokens: int,
) -> dict[str, Any]:
    links = document_ids(corpus)
    outcomes: dict[str, list[Outcome]] = {mode: [] for mode in modes}
    for i, question in enumerate(questions):
        # Each mode goes first as often as the others: the first pays a cold prefix cache for the prompt.
        for mode in modes[i % len(modes) :] + modes[: i % len(modes)]:
            outcomes[mode].append(await ask(services, question, MODES[mode], k, links))
    sample = [q for q in questions if q.answerable][:answer_questions]
    texts = await answers(services, sample, answer_tokens) if sample else []
    return {
        "k": k,
        "modes": {mode: summarise(results) for mode, results in outcomes.items()},
        "mode_fields": {mode: MODES[mode] for mode in modes},
        "defaults": services.settings.rag.model_dump(),
        "answers": {
            "questions": len(texts),
            "max_tokens": answer_tokens,
            "repeated_8gram_share": repeated_ngram_share(texts),
            "examples": texts[:3],
        },
        "misses": {
            mode: [
                {"id": o.question.id, "retrieved": o.retrieved[:k], "filter": o.author_filter, "queries": o.queries}
                for o in results
                if (o.question.answerable and not o.hit)
                or (o.question.author or None) != o.author_filter
                or (not o.question.answerable and o.retrieved)
            ]
            for mode, results in outcomes.items()
        },
    }


def markdown(report: dict[str, Any]) -> str:
    k = report["k"]
    rows = [
        f"| mode | hit@{k} | MRR@{k} | recall@{k} | author filter right | no filter when nobody named "
        "| unanswerable with no sources | answerable with no sources | mean /rag s (max_tokens 1) | steps, mean ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for mode, s in report["modes"].items():
        steps = ", ".join(f"{step} {ms:.0f}" for step, ms in s["step_ms_mean"].items())
        rows.append(
            f"| {mode} | {s['hit_at_k']} | {s['mrr_at_k']} | {s['recall_at_k']} | "
            f"{s['author_filter_correct']} of {s['author_questions']} | {s['no_filter_when_nobody_named']} | "
            f"{s['unanswerable_without_sources']} | {s['answerable_without_sources']} | {s['seconds_mean']} | {steps} |"
        )
    answers = report["answers"]
    rows += [
        "",
        f"Answers with a repeated 8-gram (default sampling, {answers['questions']} answerable questions, up to "
        f"{answers['max_tokens']} tokens): {answers['repeated_8gram_share']}",
    ]
    return "\n".join(rows) + "\n"


def write(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out / "eval.md").write_text(markdown(report))
