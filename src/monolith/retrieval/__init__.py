"""Retrieval: the embedder, the Qdrant vector store, chunking and ingestion, the authors the store holds, the
cross-encoder reranker, and the pipeline that turns a question into sources (self-query, expansion, search,
fusion, relevance floor, rerank). What becomes of the sources in a prompt is serving's (`serving.rag`)."""
