"""A client's `seed` on vLLM's CPU backend (src/monolith/engine/vllm_cpu_seed.py): without the plugin, the first
seeded prompt prefilled in chunks kills the engine core ("CPU Generator does not use offset") and with it every
request on the replica."""

from __future__ import annotations

import concurrent.futures

import httpx

from tests.conftest import ServerProcess

# Longer than engine.max_num_batched_tokens (512 in configs/cpu.yaml): prefilled in at least two steps, and the
# token sampled after the first is thrown away, which is where vLLM rewinds the request's generator.
LONG = "The replica keeps its engine alive while clients send whatever they like. " * 60


def seeded(model: str, content: str, seed: int) -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 12,
        "temperature": 1.0,  # sampling draws from the request's own generator
        "seed": seed,
    }


def test_a_seeded_prompt_prefilled_in_chunks_is_answered_the_same_every_time(http: httpx.Client) -> None:
    model = http.get("/v1/models").json()["data"][0]["id"]
    body = seeded(model, LONG, 1234)
    first = http.post("/v1/chat/completions", json=body)
    assert first.status_code == 200, first.text
    assert first.json()["usage"]["prompt_tokens"] > 512
    # The second time most of the prompt comes from the prefix cache, so it is prefilled in fewer steps and
    # fewer sampled tokens are thrown away: the same text only if each discard left the generator as it was.
    second = http.post("/v1/chat/completions", json=body)
    assert second.status_code == 200, second.text
    assert second.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]
    assert http.get("/health/ready").status_code == 200


def test_seeded_requests_sharing_steps_leave_the_engine_serving(server: ServerProcess, http: httpx.Client) -> None:
    """Sixteen seeded prompts at once: the step's token budget splits some of them across steps."""
    model = http.get("/v1/models").json()["data"][0]["id"]

    def ask(i: int) -> int:
        body = seeded(model, f"Request {i}: " + LONG[: 200 + 40 * i], i)
        return httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=300).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert list(pool.map(ask, range(16))) == [200] * 16
    assert http.get("/health/ready").status_code == 200
