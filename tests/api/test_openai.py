"""The official openai client against the real server: chat, streaming, completions, models, RAG."""

from __future__ import annotations

import pytest
from openai import NotFoundError, OpenAI


def test_models_lists_the_served_model_and_its_rag_alias(openai_client: OpenAI) -> None:
    ids = [m.id for m in openai_client.models.list()]
    assert ids == ["twin", "twin-rag", "all-MiniLM-L6-v2"]


def test_chat_completion_returns_text_and_usage(openai_client: OpenAI) -> None:
    result = openai_client.chat.completions.create(
        model="twin", messages=[{"role": "user", "content": "Name one use of a GPU."}], max_tokens=12, temperature=0
    )
    assert result.object == "chat.completion"
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content.strip()
    assert result.choices[0].finish_reason in {"stop", "length"}
    assert 0 < result.usage.completion_tokens <= 12
    assert result.usage.prompt_tokens > 5


def test_chat_completion_streams_tokens_and_usage(openai_client: OpenAI) -> None:
    stream = openai_client.chat.completions.create(
        model="twin",
        messages=[{"role": "user", "content": "Say something about Python."}],
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert len([p for p in pieces if p]) >= 2, "expected several token deltas"
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    assert "".join(pieces).strip()
    assert finish in {"stop", "length"}
    assert usage is not None and 0 < usage.completion_tokens <= 16


def test_rag_through_the_model_alias_returns_sources(openai_client: OpenAI) -> None:
    result = openai_client.chat.completions.create(
        model="twin-rag", messages=[{"role": "user", "content": "How do I deploy an LLM?"}], max_tokens=16
    )
    sources = result.model_extra["sources"]
    assert sources and all(s["link"].startswith("https://") for s in sources)
    assert result.choices[0].message.content.strip()


def test_rag_through_the_extra_body_field_takes_overrides(openai_client: OpenAI) -> None:
    result = openai_client.chat.completions.create(
        model="twin",
        messages=[{"role": "user", "content": "What is PagedAttention?"}],
        max_tokens=8,
        extra_body={"rag": {"k": 1, "expand": False, "self_query": False}},
    )
    assert len(result.model_extra["sources"]) == 1


def test_plain_chat_carries_no_sources(openai_client: OpenAI) -> None:
    result = openai_client.chat.completions.create(
        model="twin", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert "sources" not in (result.model_extra or {})


def test_completions_with_a_list_of_prompts_answers_each(openai_client: OpenAI) -> None:
    result = openai_client.completions.create(
        model="twin", prompt=["The capital of France is", "One, two, three,"], max_tokens=6, temperature=0
    )
    assert [c.index for c in result.choices] == [0, 1]
    assert all(c.text for c in result.choices)
    assert result.usage.completion_tokens <= 12


def test_completions_stream(openai_client: OpenAI) -> None:
    stream = openai_client.completions.create(model="twin", prompt="Once upon a time", max_tokens=10, stream=True)
    text = "".join(c.choices[0].text for c in stream if c.choices)
    assert text.strip()


def test_completions_take_token_ids_like_the_same_text(openai_client: OpenAI, tokenizer) -> None:
    text = "The capital of France is"
    ids = tokenizer.encode(text)
    by_text = openai_client.completions.create(model="twin", prompt=text, max_tokens=8, temperature=0)
    by_ids = openai_client.completions.create(model="twin", prompt=ids, max_tokens=8, temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    assert by_ids.usage.prompt_tokens == len(ids) == by_text.usage.prompt_tokens


def test_completions_take_a_list_of_token_id_lists_and_echo_their_text(openai_client: OpenAI, tokenizer) -> None:
    prompts = ["One, two, three,", "Hello"]
    result = openai_client.completions.create(
        model="twin", prompt=[tokenizer.encode(p) for p in prompts], max_tokens=4, temperature=0, echo=True
    )
    assert [c.text[: len(p)] for c, p in zip(result.choices, prompts, strict=True)] == prompts
    assert result.usage.prompt_tokens == sum(len(tokenizer.encode(p)) for p in prompts)


def test_unknown_model_raises_not_found(openai_client: OpenAI) -> None:
    with pytest.raises(NotFoundError):
        openai_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
