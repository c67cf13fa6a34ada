"""`make bench`: the monolith against `vllm serve` and against a microservice split, side by side."""
