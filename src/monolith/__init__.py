"""monolith: a single-process LLM Twin inference server (Litestar + vLLM + in-process RAG)."""

__version__ = "0.1.0"
