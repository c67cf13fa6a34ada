"""The chat route honours what docs/api/openai.md says it takes: stop, seed, top_p, the penalties, content parts and
the developer role; a RAG chat streams its sources first and puts its context ahead of the caller's system
text; a RAG chat must end with the user's question; a streamed multi-prompt completion is refused."""

from __future__ import annotations

import json
from collections import Counter

import httpx

from monolith.generation import Generator
from monolith.retrieval.pipeline import Source
from monolith.serving.rag import SYSTEM_PROMPT, build_prompt
from tests.serving.test_rag_prompt import _generator, _sources

QUESTION = [{"role": "user", "content": "Count from one to twenty in words, separated by commas."}]


def chat(http: httpx.Client, **body: object) -> dict:
    response = http.post("/v1/chat/completions", json={"model": "twin", "messages": QUESTION, **body})
    assert response.status_code == 200, response.text
    return response.json()


def text_of(answer: dict) -> str:
    return answer["choices"][0]["message"]["content"]


def test_stop_ends_the_answer_before_the_stop_string(http: httpx.Client) -> None:
    full = text_of(chat(http, max_tokens=40, temperature=0))
    words = [w.strip(",.") for w in full.split()]
    stop = next(w for w in words[2:] if len(w) > 2)
    cut = chat(http, max_tokens=40, temperature=0, stop=[stop, "zzzz-never"])
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert stop not in text_of(cut) and full.startswith(text_of(cut)) and len(text_of(cut)) < len(full)


def test_a_seed_makes_sampling_repeatable(http: httpx.Client) -> None:
    first = text_of(chat(http, max_tokens=24, temperature=1.0, seed=1234))
    again = text_of(chat(http, max_tokens=24, temperature=1.0, seed=1234))
    assert first == again
    others = {text_of(chat(http, max_tokens=24, temperature=1.0, seed=s)) for s in (1, 2, 3)}
    assert len(others | {first}) > 1, "different seeds sample differently"


def test_a_tiny_top_p_samples_like_greedy_decoding(http: httpx.Client) -> None:
    greedy = text_of(chat(http, max_tokens=24, temperature=0))
    nucleus = text_of(chat(http, max_tokens=24, temperature=1.5, top_p=0.001, seed=7))
    assert nucleus == greedy


def test_penalties_discourage_repeating_tokens(http: httpx.Client) -> None:
    echo = [{"role": "user", "content": "Repeat after me forever: la la la la la la la la la la"}]
    body = {"model": "twin", "messages": echo, "max_tokens": 32, "temperature": 0, "ignore_eos": True}
    plain = text_of(http.post("/v1/chat/completions", json=body).json())
    penalised = text_of(
        http.post("/v1/chat/completions", json={**body, "frequency_penalty": 2.0, "presence_penalty": 2.0}).json()
    )
    top = Counter(plain.split()).most_common(1)[0][1]
    assert Counter(penalised.split()).most_common(1)[0][1] < top, (plain, penalised)


def test_text_content_parts_are_joined_and_other_parts_refused(http: httpx.Client) -> None:
    as_string = chat(http, max_tokens=12, temperature=0)
    parts = [
        {"type": "text", "text": "Count from one to twenty in words, "},
        {"type": "text", "text": "separated by commas."},
    ]
    as_parts = http.post(
        "/v1/chat/completions",
        json={"model": "twin", "messages": [{"role": "user", "content": parts}], "max_tokens": 12, "temperature": 0},
    ).json()
    assert as_parts["usage"]["prompt_tokens"] == as_string["usage"]["prompt_tokens"]
    assert text_of(as_parts) == text_of(as_string)
    image = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    body = {"model": "twin", "messages": [{"role": "user", "content": image}]}
    refused = http.post("/v1/chat/completions", json=body)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "messages[0].content[0].type"


def test_the_developer_role_is_a_system_message(http: httpx.Client) -> None:
    def with_role(role: str) -> dict:
        messages = [{"role": role, "content": "Answer in one word."}, *QUESTION]
        body = {"model": "twin", "messages": messages, "max_tokens": 12, "temperature": 0}
        return http.post("/v1/chat/completions", json=body).json()

    developer, system = with_role("developer"), with_role("system")
    assert developer["usage"] == system["usage"] and text_of(developer) == text_of(system)


def test_a_streamed_rag_chat_carries_its_sources_on_the_first_chunk(http: httpx.Client) -> None:
    body = {
        "model": "twin-rag",
        "messages": [{"role": "user", "content": "How do I deploy an LLM?"}],
        "max_tokens": 8,
        "stream": True,
        "rag": {"expand": False, "self_query": False},
    }
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        first = next(line for line in response.iter_lines() if line.startswith("data: "))
    chunk = json.loads(first.removeprefix("data: "))
    assert chunk["object"] == "chat.completion.chunk"
    assert chunk["sources"] and all(s["link"] and s["content"] for s in chunk["sources"])


def test_a_rag_chat_must_end_with_the_users_question(scripted: httpx.Client) -> None:
    messages = [{"role": "user", "content": "How do I deploy?"}, {"role": "assistant", "content": "Like this."}]
    response = scripted.post("/v1/chat/completions", json={"model": "twin-rag", "messages": messages})
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages"


def test_a_streamed_completion_of_several_prompts_is_refused(scripted: httpx.Client) -> None:
    body = {"model": "twin", "prompt": ["one", "two"], "max_tokens": 2, "stream": True}
    response = scripted.post("/v1/completions", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "prompt"


def test_retrieved_context_goes_ahead_of_the_callers_system_text(tokenizer, settings) -> None:
    generator: Generator = _generator(tokenizer, settings, max_model_len=2048)
    sources: list[Source] = _sources(2, words=5)
    messages = [{"role": "system", "content": "CALLER-SYSTEM-TEXT"}, {"role": "user", "content": "How?"}]
    ids, _ = build_prompt(generator, messages, sources, max_tokens=16, param="messages")
    text = tokenizer.decode(ids)
    assert text.count("<|im_start|>system") == 1, "one system message"
    system = text.split("<|im_start|>system", 1)[1].split("<|im_end|>", 1)[0]
    assert system.index(SYSTEM_PROMPT.strip()[:40]) < system.index("chunk 0") < system.index("CALLER-SYSTEM-TEXT")
