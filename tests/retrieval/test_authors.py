"""Which known author a question names: the forms people write names in, and names the store does not hold."""

from __future__ import annotations

import pytest

from monolith.retrieval.authors import AuthorIndex, close, fold

AUTHORS = ["Tomás Reyes", "Jonas Weber", "Ada Lindqvist", "Priya Natarajan"]


@pytest.mark.parametrize(
    ("question", "author"),
    [
        ("What does Tomás Reyes say about reranking?", "Tomás Reyes"),  # full name
        ("What does Tomas Reyes say about reranking?", "Tomás Reyes"),  # no accent
        ("what does tomas reyes think?", "Tomás Reyes"),  # lower case
        ("WHAT DOES TOMÁS REYES RECOMMEND?", "Tomás Reyes"),  # upper case
        ("How does Reyes chunk articles?", "Tomás Reyes"),  # last name only
        ("reyes on hybrid search", "Tomás Reyes"),  # last name, lower case
        ("What is Jonas Weber's advice on probes?", "Jonas Weber"),  # possessive
        ("Jonas Weber’s take on batching", "Jonas Weber"),  # typographic apostrophe
        ("Webers' metrics", "Jonas Weber"),  # plural possessive
        ("What did Lindquist write about the KV cache?", "Ada Lindqvist"),  # a typo in a long name
        ("Does Jonas Webber prefer a monolith?", "Jonas Weber"),  # a typo in a short one
        ("natarajan on DPO", "Priya Natarajan"),
        ("What about Ada?", "Ada Lindqvist"),  # a first name written as a name
        ("Priya's advice on LoRA", "Priya Natarajan"),
    ],
)
def test_a_question_naming_a_known_author_in_any_common_form_gets_that_filter(question: str, author: str) -> None:
    match = AuthorIndex(AUTHORS).match(question)
    assert (match.author, match.candidates) == (author, ())


@pytest.mark.parametrize(
    "question",
    [
        "How do I deploy an LLM?",
        "What does Maria Schmidt say about tax law?",  # a name the store does not hold
        "What does the Weberstrasse look like?",  # a longer word is not the name
        "How do models see with their eyes?",  # one letter from "Reyes", but short
        "what about ada?",  # a first name needs a capital to be a name
        "Does Reyes agree with Weber?",  # two people: one filter would drop the other's writing
    ],
)
def test_no_filter_when_no_single_known_author_is_named(question: str) -> None:
    match = AuthorIndex(AUTHORS).match(question)
    assert (match.author, match.candidates) == (None, ())


def test_one_name_that_fits_several_authors_is_left_to_a_choice() -> None:
    index = AuthorIndex([*AUTHORS, "Anna Weber"])
    assert index.match("What does Weber say?").candidates == ("Anna Weber", "Jonas Weber")
    assert index.match("What does Jonas Weber say?").author == "Jonas Weber"
    assert index.match("anything at all").candidates == ()


def test_folding_and_edit_distance() -> None:
    assert fold("Tomás ÅSTRÖM") == "tomas astrom"
    assert close("lindquist", "lindqvist") and close("webber", "weber") and not close("eyes", "reyes")
    assert not close("natarajan", "nat")
