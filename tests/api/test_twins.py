"""Many twins on one replica, on the real engine: two LoRA adapters made by peft (tests/twins.py) beside the base
model, each twin chosen by `model` (or TGI's `adapter_id`) on every route and answering from its own author's
documents. One LoRA slot for two twins: base and twin requests share engine steps, and the twins take turns.

The mixed-traffic test is the one that catches vllm-project/vllm#48421 (a base request batched beside a twin's
answered with the twin's weights): it goes red with the plugin off (VLLM_PLUGINS=monolith_cpu_seed)."""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.test_jobs import wait_for_job
from tests.conftest import ManagedServer, managed_server
from tests.helpers import eventually
from tests.twins import AUTHORS, twins_env

pytestmark = pytest.mark.slow

PROMPT = "The best way to learn to write well is"
ADA_STREAMS, ADA_REQUESTS = 4, 25
TOKENS = 24
MODELS = ["twin", "ada", "jonas"]


@pytest.fixture(scope="module")
def twins_server(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, twin_adapters: dict[str, Path]
) -> Iterator[ManagedServer]:
    env = {**twins_env(twin_adapters, max_loras="1"), "MONOLITH_RAG__EXPAND": "false"}
    with managed_server(tmp_path_factory.mktemp("twins"), model_dir, env) as managed:
        yield managed


@pytest.fixture(scope="module")
def http(twins_server: ManagedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=twins_server.up().base_url, timeout=300) as client:
        yield client


def completion(http: httpx.Client, model: str, prompt: str = PROMPT) -> str:
    body = {"model": model, "prompt": prompt, "max_tokens": TOKENS, "temperature": 0}
    response = http.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == model
    return response.json()["choices"][0]["text"]


@pytest.fixture(scope="module")
def alone(http: httpx.Client) -> dict[str, str]:
    """Each model's greedy answer with nothing else running."""
    return {model: completion(http, model) for model in MODELS}


def test_each_twin_answers_with_its_own_weights_the_same_every_time(http: httpx.Client, alone) -> None:
    assert len(set(alone.values())) == 3, alone  # the base, ada and jonas: three different texts
    assert {model: completion(http, model) for model in MODELS} == alone


def test_base_and_twin_requests_in_one_step_each_get_their_answer_alone(http: httpx.Client, alone) -> None:
    """vllm#48421: with the last LoRA slot holding a twin, a base request batched beside it got the twin's text."""
    order = MODELS * 3
    with concurrent.futures.ThreadPoolExecutor(len(order)) as pool:
        mixed = list(pool.map(lambda model: completion(http, model), order))
    assert [alone[model] for model in order] == mixed


def test_chat_and_responses_choose_the_twin_by_model(http: httpx.Client) -> None:
    def chat(model: str) -> str:
        body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 12, "temperature": 0}
        response = http.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["message"]["content"]

    def respond(model: str) -> str:
        body = {"model": model, "input": PROMPT, "max_output_tokens": 12, "temperature": 0}
        response = http.post("/v1/responses", json=body)
        assert response.status_code == 200, response.text
        return response.json()["output"][0]["content"][0]["text"]

    chats = {model: chat(model) for model in MODELS}
    assert len(set(chats.values())) == 3, chats
    assert {model: respond(model) for model in MODELS} == chats  # the same conversation, the same weights


def test_tgi_adapter_id_answers_as_completions_with_that_model(http: httpx.Client, alone) -> None:
    for name in ("ada", "jonas"):
        body = {"inputs": PROMPT, "parameters": {"adapter_id": name, "max_new_tokens": TOKENS}}
        generated = http.post("/generate", json=body)
        assert generated.status_code == 200, generated.text
        assert generated.json()["generated_text"] == alone[name]
        invoked = http.post("/invocations", json=body)
        assert invoked.status_code == 200, invoked.text
        assert invoked.json() == [{"generated_text": alone[name]}]
    base = http.post("/generate", json={"inputs": PROMPT, "parameters": {"max_new_tokens": TOKENS}})
    assert base.json()["generated_text"] == alone["twin"]


def test_a_twin_async_job_and_batch_line_answer_as_in_real_time(http: httpx.Client, alone) -> None:
    body = {"model": "jonas", "prompt": PROMPT, "max_tokens": TOKENS, "temperature": 0}
    submitted = http.post("/v1/async/completions", json=body)
    assert submitted.status_code == 202, submitted.text
    job = wait_for_job(http, submitted.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["result"]["choices"][0]["text"] == alone["jonas"]

    lines = [
        {"custom_id": name, "method": "POST", "url": "/v1/completions", "body": {**body, "model": name}}
        for name in ("ada", "twin", "nobody")
    ]
    answers = run_batch(http, lines)
    assert answers["ada"]["body"]["choices"][0]["text"] == alone["ada"]
    assert answers["twin"]["body"]["choices"][0]["text"] == alone["twin"]
    assert answers["nobody"]["status_code"] == 404
    assert answers["nobody"]["body"]["error"]["code"] == "model_not_found"


def run_batch(http: httpx.Client, lines: list[dict]) -> dict[str, dict]:
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = http.post("/v1/files", files={"file": ("in.jsonl", content)}, data={"purpose": "batch"})
    assert uploaded.status_code == 200, uploaded.text
    create = {"input_file_id": uploaded.json()["id"], "endpoint": "/v1/completions", "completion_window": "24h"}
    batch = http.post("/v1/batches", json=create).json()

    def finished() -> dict | None:
        now = http.get(f"/v1/batches/{batch['id']}").json()
        return now if now["status"] in {"completed", "failed", "cancelled"} else None

    done = eventually(finished, 300, "the batch to finish", interval_s=0.3)
    assert done["status"] == "completed", done
    output = http.get(f"/v1/files/{done['output_file_id']}/content").text
    errors = http.get(f"/v1/files/{done['error_file_id']}/content").text if done.get("error_file_id") else ""
    parsed = [json.loads(line) for line in (output + errors).splitlines()]
    return {line["custom_id"]: line["response"] for line in parsed}


# Each names the other twin's author, on a subject both have written about (corpus/sample.jsonl).
QUESTIONS = {
    "ada": "What has Jonas Weber written about serving LLMs on Kubernetes?",
    "jonas": "What has Ada Lindqvist written about deploying an LLM to production?",
}
QUESTION_NAMING_ANOTHER = QUESTIONS["ada"]


@pytest.mark.parametrize("twin", ["ada", "jonas"])
def test_a_twins_rag_reads_only_its_authors_documents(http: httpx.Client, twin: str) -> None:
    """Even when the question names another author: the twin's filter is fixed, self-query cannot move it."""
    author, question = AUTHORS[twin], QUESTIONS[twin]
    chat = {"model": f"{twin}-rag", "messages": [{"role": "user", "content": question}], "max_tokens": 8}
    answered = http.post("/v1/chat/completions", json=chat)
    assert answered.status_code == 200, answered.text
    assert answered.json()["sources"] and {s["author_full_name"] for s in answered.json()["sources"]} == {author}

    rag = http.post("/rag", json={"query": question, "model": twin, "max_tokens": 8, "self_query": True})
    assert rag.status_code == 200, rag.text
    assert rag.json()["author_filter"] == author
    assert rag.json()["sources"] and {s["author_full_name"] for s in rag.json()["sources"]} == {author}

    flagged = http.post("/v1/chat/completions", json={**chat, "model": twin, "rag": True})
    assert {s["author_full_name"] for s in flagged.json()["sources"]} == {author}


def test_the_base_models_rag_still_follows_the_question(http: httpx.Client) -> None:
    rag = http.post("/rag", json={"query": QUESTION_NAMING_ANOTHER, "max_tokens": 8, "self_query": True})
    assert rag.status_code == 200, rag.text
    assert rag.json()["author_filter"] == "Jonas Weber"


def test_models_lists_each_twin_and_its_rag_alias_on_the_base(http: httpx.Client, twin_adapters) -> None:
    cards = {card["id"]: card for card in http.get("/v1/models").json()["data"]}
    for name in ("ada", "jonas"):
        for alias in (name, f"{name}-rag"):
            assert cards[alias]["parent"] == "twin" and cards[alias]["root"] == str(twin_adapters[name])
            assert http.get(f"/v1/models/{alias}").json() == cards[alias]
    assert cards["twin"]["parent"] is None


UNKNOWN = [
    ("/v1/chat/completions", {"model": "nobody", "messages": [{"role": "user", "content": "hi"}]}, "model"),
    ("/v1/chat/completions", {"model": "nobody-rag", "messages": [{"role": "user", "content": "hi"}]}, "model"),
    ("/v1/completions", {"model": "nobody", "prompt": "hi"}, "model"),
    ("/v1/responses", {"model": "nobody", "input": "hi"}, "model"),
    ("/rag", {"query": "hi", "model": "nobody"}, "model"),
    ("/generate", {"inputs": "hi", "parameters": {"adapter_id": "nobody"}}, "parameters.adapter_id"),
    ("/generate_stream", {"inputs": "hi", "parameters": {"adapter_id": "nobody"}}, "parameters.adapter_id"),
    ("/invocations", {"inputs": "hi", "parameters": {"adapter_id": "nobody"}}, "parameters.adapter_id"),
    ("/invocations", {"model": "nobody", "messages": [{"role": "user", "content": "hi"}]}, "model"),
    ("/v1/async/chat/completions", {"model": "nobody", "messages": [{"role": "user", "content": "hi"}]}, "model"),
    ("/v1/async/rag", {"query": "hi", "model": "nobody"}, "model"),
    ("/v1/async/generate", {"inputs": "hi", "parameters": {"adapter_id": "nobody"}}, "parameters.adapter_id"),
]


@pytest.mark.parametrize(("path", "body", "param"), UNKNOWN, ids=[f"{p} {b.get('model', '')}" for p, b, _ in UNKNOWN])
def test_an_unknown_twin_is_a_404_naming_the_field_never_the_base(
    http: httpx.Client, path: str, body: dict, param: str
) -> None:
    response = http.post(path, json=body)
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    if isinstance(error, str):  # TGI's shape: {"error": message, "error_type": ...}
        assert "nobody" in error
        return
    assert error["code"] == "model_not_found" and error["param"] == param, error
    assert http.get("/v1/models/nobody").status_code == 404


def test_metrics_count_each_twins_generations_and_no_unknown_name(http: httpx.Client, alone) -> None:
    """After the answers above (and the 404s, which reach no engine): a bounded series per configured model."""
    http.post("/v1/completions", json={"model": "nobody", "prompt": "hi"})
    metrics = http.get("/metrics").text
    for model in MODELS:
        count = sample(metrics, f'monolith_model_generations_total{{model="{model}"}}')
        assert count >= 1, (model, count)
        assert sample(metrics, f'monolith_model_generated_tokens_total{{model="{model}"}}') >= TOKENS
        assert sample(metrics, f'monolith_model_time_to_first_token_seconds_count{{model="{model}"}}') == count
    assert 'model="nobody"' not in metrics
    assert 'monolith_twin_running{twin="ada"}' in metrics and 'monolith_twin_waiting{twin="jonas"}' in metrics
    for twin in ("ada", "jonas"):  # the server has waited for a slot by now (one slot, two twins at once)
        assert sample(metrics, f'monolith_twin_slot_waiting{{twin="{twin}"}}') == 0
        # One slot for two twins taking turns: each read from disk once (the warm-up), then swapped in from host
        # memory, which holds both; each swap's first token timed.
        assert sample(metrics, f'monolith_twin_swaps_total{{source="disk",twin="{twin}"}}') == 1
        assert sample(metrics, f'monolith_twin_swaps_total{{source="host",twin="{twin}"}}') >= 1
    swapped = sum(
        sample(metrics, f'monolith_twin_swaps_total{{source="{s}",twin="{t}"}}')
        for s in ("host", "disk")
        for t in ("ada", "jonas")
    )
    timed = sum(
        sample(metrics, f'monolith_twin_swap_time_to_first_token_seconds_count{{source="{s}"}}')
        for s in ("host", "disk")
    )
    assert timed == swapped


def sample(metrics: str, series: str) -> float:
    line = next((line for line in metrics.splitlines() if line.startswith(series + " ")), None)
    assert line is not None, f"{series} not exported"
    return float(line.rsplit(" ", 1)[1])


def test_a_prefix_cache_block_is_never_shared_between_the_base_and_a_twin(http: httpx.Client) -> None:
    """vLLM keys a cached block by the adapter too: a twin never reads KV made by the base's weights (or another
    twin's), while a second request of the same model does hit the cache."""
    prompt = "Twins keep their own caches. " * 24  # several full blocks of engine.block_size (32 tokens)

    def hits_after(model: str) -> float:
        completion(http, model, prompt)
        return sample(http.get("/metrics").text, "monolith_engine_prefix_cache_hits_total")

    start = sample(http.get("/metrics").text, "monolith_engine_prefix_cache_hits_total")
    base_first = hits_after("twin")
    base_again = hits_after("twin")
    ada_first = hits_after("ada")
    ada_again = hits_after("ada")
    jonas_first = hits_after("jonas")
    assert base_again > base_first, "the same model hits its cache"
    assert ada_first == base_again, "the twin read nothing the base cached"
    assert ada_again > ada_first
    assert jonas_first == ada_again, "nor what another twin cached"
    assert base_first >= start


def test_a_steady_stream_for_one_twin_does_not_starve_another(http: httpx.Client) -> None:
    """One LoRA slot and ada always running (four streams of staggered lengths, so that they rarely all end in
    one step): vLLM alone goes on scheduling ada's newer requests while jonas's waits for the slot they hold
    (its scheduler skips jonas step after step: 93 of the 100 went ahead, measured). Here jonas lets at most one
    engine-full go ahead before ada is drained for it, and ada's stream goes on after it."""
    import threading

    answered: list[int] = []
    stop = threading.Event()

    def ada_stream(tokens: int) -> None:
        with httpx.Client(base_url=str(http.base_url), timeout=300) as client:
            for _ in range(ADA_REQUESTS):
                if stop.is_set():
                    return
                body = {"model": "ada", "prompt": PROMPT, "max_tokens": tokens, "temperature": 0, "ignore_eos": True}
                assert client.post("/v1/completions", json=body).status_code == 200
                answered.append(tokens)

    streams = [threading.Thread(target=ada_stream, args=(10 + 3 * i,)) for i in range(ADA_STREAMS)]
    for thread in streams:
        thread.start()
        time.sleep(0.3)
    try:
        eventually(lambda: len(answered) >= ADA_STREAMS, 120, "ada's streams to run")
        before = len(answered)
        jonas = http.post("/v1/completions", json={"model": "jonas", "prompt": PROMPT, "max_tokens": 4}, timeout=300)
        waited_for = len(answered) - before
        assert jonas.status_code == 200, jonas.text
        # Those running, and one engine-full (max_num_seqs, 16) let ahead before ada is drained for it.
        assert waited_for <= ADA_STREAMS + 16, f"jonas waited for {waited_for} ada requests"
        eventually(lambda: len(answered) > before + waited_for, 120, "ada's stream to go on after jonas")
    finally:
        stop.set()
        for thread in streams:
            thread.join()
