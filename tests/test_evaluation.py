"""`monolith eval`'s arithmetic on hand-made outcomes, and the question set it ships with."""

from __future__ import annotations

import json
from pathlib import Path

from monolith.evaluation import (
    KINDS,
    Outcome,
    Question,
    document_ids,
    load_questions,
    markdown,
    repeated_ngram_share,
    summarise,
)

ROOT = Path(__file__).resolve().parents[1]


def outcome(question: Question, retrieved: list[str], author: str | None = None, seconds: float = 1.0) -> Outcome:
    return Outcome(
        question, retrieved, 0.5 if retrieved else None, author, seconds, {"embed": 10.0}, [question.question]
    )


def test_hit_mrr_recall_author_and_unanswerable_figures() -> None:
    by_ada = Question("a", "author", "What does Ada say?", ["d1", "d2"], "Ada Lindqvist")
    plain = Question("p", "paraphrase", "q", ["d3"], None)
    nothing = Question("u", "unanswerable", "bread?", [], None)
    s = summarise(
        [
            outcome(by_ada, ["d9", "d2"], author="Ada Lindqvist"),  # hit at rank 2, half the relevant
            outcome(plain, ["d4"], author="Ada Lindqvist"),  # miss, and a filter nobody asked for
            outcome(nothing, []),  # no sources: right
        ]
    )
    assert (s["hit_at_k"], s["mrr_at_k"], s["recall_at_k"]) == (0.5, 0.25, 0.25)
    assert (s["author_filter_correct"], s["author_questions"]) == (1, 1)
    assert s["no_filter_when_nobody_named"] == 0.5 and s["unanswerable_without_sources"] == 1.0
    assert s["by_kind"]["author"] == {"hit": 1.0, "mrr": 0.5}
    table = markdown(
        {"k": 4, "modes": {"plain": s}, "answers": {"questions": 0, "max_tokens": 8, "repeated_8gram_share": 0.0}}
    )
    assert "| plain | 0.5 | 0.25 | 0.25 | 1 of 1 | 0.5 | 1.0 | 0 |" in table


def test_a_looping_answer_has_a_repeated_8gram() -> None:
    loop = "now you have to choose a LLM server. " * 3
    assert repeated_ngram_share([loop, "a short answer that does not repeat itself at all, not once"]) == 0.5


def test_the_shipped_question_set_is_labelled_against_the_sample_corpus() -> None:
    questions = load_questions(ROOT / "corpus" / "eval.jsonl")
    known = set(document_ids(ROOT / "corpus" / "sample.jsonl").values())
    authors = {
        json.loads(line)["author_full_name"] for line in (ROOT / "corpus" / "sample.jsonl").read_text().splitlines()
    }
    assert len(questions) >= 40 and {q.kind for q in questions} == set(KINDS)
    assert len({q.id for q in questions}) == len(questions)
    for q in questions:
        assert set(q.relevant) <= known, q.id
        assert (q.kind == "unanswerable") == (not q.relevant), q.id
        assert q.author is None or q.author in authors, q.id
    assert sum(q.kind == "author" for q in questions) >= 10
