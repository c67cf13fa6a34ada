"""Split documents per type: posts small, articles on sentence boundaries, repositories large with overlap.

Sizes are in characters (config `ingest.*`); all-MiniLM-L6-v2 reads 256 word pieces, about 1000 characters.
"""

from __future__ import annotations

import re

from monolith.config import ChunkSize, IngestSettings

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def windows(text: str, size: ChunkSize) -> list[str]:
    """Fixed-size windows with overlap, cut at whitespace where possible."""
    text = text.strip()
    chunks: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + size.size, len(text))
        if end < len(text):
            space = text.rfind(" ", start + size.size // 2, end)
            end = space if space > start else end
        chunks.append(text[start:end].strip())
        if end >= len(text):
            break
        start = max(end - size.overlap, start + 1)
    return [c for c in chunks if c]


def sentences(text: str, size: ChunkSize) -> list[str]:
    """Whole sentences packed up to `size`; a sentence longer than that is windowed."""
    chunks: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text.strip()):
        if len(sentence) > size.size:
            if current:
                chunks.append(current)
                current = ""
            chunks.extend(windows(sentence, size))
        elif len(current) + len(sentence) + 1 > size.size:
            chunks.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        chunks.append(current)
    return chunks


def chunk(doc_type: str, text: str, settings: IngestSettings) -> list[str]:
    if doc_type == "article":
        return sentences(text, settings.article)
    if doc_type == "repository":
        return windows(text, settings.repository)
    return windows(text, settings.post)
