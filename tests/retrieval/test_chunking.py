from __future__ import annotations

import itertools

from monolith.config import ChunkSize, IngestSettings
from monolith.retrieval.chunking import chunk, sentences, windows

TEXT = " ".join(f"Sentence number {i} talks about serving models." for i in range(40))


def test_windows_respect_size_and_overlap() -> None:
    size = ChunkSize(size=200, overlap=50)
    parts = windows(TEXT, size)
    assert len(parts) > 1
    assert all(len(p) <= 200 for p in parts)
    for first, second in itertools.pairwise(parts):
        assert first[-20:].split()[-1] in second  # consecutive windows share text
    assert parts[0].startswith("Sentence number 0") and parts[-1].endswith("models.")


def test_sentences_are_never_cut_when_they_fit() -> None:
    parts = sentences(TEXT, ChunkSize(size=300))
    assert all(len(p) <= 300 for p in parts)
    assert all(p.endswith(".") for p in parts)
    assert " ".join(parts) == TEXT


def test_an_overlong_sentence_is_windowed() -> None:
    long_sentence = "word " * 200
    parts = sentences(long_sentence, ChunkSize(size=100))
    assert len(parts) >= 10 and all(len(p) <= 100 for p in parts)


def test_chunking_follows_the_document_type() -> None:
    settings = IngestSettings()
    assert all(len(p) <= settings.post.size for p in chunk("post", TEXT, settings))
    assert len(chunk("article", TEXT, settings)) < len(chunk("post", TEXT, settings))
    assert chunk("post", "short post", settings) == ["short post"]
