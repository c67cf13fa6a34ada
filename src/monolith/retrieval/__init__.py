"""Embedding, the Qdrant vector store, chunking and ingestion."""
