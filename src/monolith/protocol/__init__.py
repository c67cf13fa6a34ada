"""Wire types (msgspec Structs), one module per API, requests and responses: chat, completions, responses, rag,
embeddings, rerank, tokenize, models, jobs, files, batches, and the one error body (`errors`). Below serving:
the HTTP routes, async jobs and batch lines all speak them; they import only the bottom floor (errors)."""
