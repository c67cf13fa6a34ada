"""tool_choice "auto" the model's own way (engine.tool_call_parser, with a chat template that knows tools, as
Llama 3.1's does): the template shows the tools, no grammar constrains the answer, and vLLM's own parser reads
the calls. The real app, the real tokenizer (with a tools-aware template) and vLLM's real "pythonic" parser,
which loads on any tokenizer; a scripted engine writes the answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
import pytest
from transformers import AutoTokenizer

from monolith.admission import Admission
from monolith.config import Settings
from monolith.engine import Delta, Sampling
from monolith.generation import Generator
from tests.conftest import free_port
from tests.scripted import ScriptedEngine, ThreadedServer

TEMPLATE = (
    "{% if tools %}Tools: {{ tools | tojson }}\n{% endif %}"
    "{% for m in messages %}{{ m.role }}: {{ m.content }}"
    "{% if m.tool_calls %} calls {{ m.tool_calls | tojson }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@dataclass
class Answering(ScriptedEngine):
    """Writes `answer` whole, and keeps what it was asked."""

    answer: str = ""
    asked: list[tuple[list[int], Sampling]] = field(default_factory=list)

    async def stream(self, prompt_ids: list[int], sampling: Sampling, request_id: str) -> AsyncIterator[Delta]:
        self.asked.append((prompt_ids, sampling))
        yield Delta(self.answer, 7, len(prompt_ids), "stop")


@pytest.fixture
def tokenizer(model_dir: Path) -> object:
    loaded = AutoTokenizer.from_pretrained(model_dir)
    loaded.chat_template = TEMPLATE
    return loaded


@pytest.fixture
def native(settings: Settings) -> Settings:
    return settings.model_copy(update={"engine": settings.engine.model_copy(update={"tool_call_parser": "pythonic"})})


@pytest.fixture
def engine(tokenizer: object) -> Answering:
    return Answering(tokenizer=tokenizer)  # type: ignore[arg-type]


@pytest.fixture
def base_url(native: Settings, engine: Answering) -> Iterator[str]:
    with ThreadedServer(native, engine, free_port()) as server:
        yield server.base_url


def ask(base_url: str, **extra: object) -> httpx.Response:
    body = {"model": "twin", "messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [WEATHER]}
    return httpx.post(f"{base_url}/v1/chat/completions", json={**body, **extra}, timeout=30)


def test_auto_shows_the_tools_through_the_template_and_reads_the_models_calls(
    base_url: str, engine: Answering, tokenizer: object
) -> None:
    engine.answer = '[get_weather(city="Paris"), get_weather(city="Lyon")]'
    choice = ask(base_url).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    calls = choice["message"]["tool_calls"]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Lyon"}),
    ]
    prompt_ids, sampling = engine.asked[-1]
    prompt = tokenizer.decode(prompt_ids)  # type: ignore[attr-defined]
    assert prompt.startswith("Tools: ") and "get_weather" in prompt
    assert "answer with JSON" not in prompt  # no grammar instructions
    assert sampling.structured is None
    assert sampling.temperature == 0.7  # engine.tool_temperature is for the grammar's answers, not the model's own


def test_earlier_calls_and_results_are_shown_the_templates_way(
    base_url: str, engine: Answering, tokenizer: object
) -> None:
    engine.answer = "It is sunny."
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    ]
    assert ask(base_url, messages=history).status_code == 200
    prompt = tokenizer.decode(engine.asked[-1][0])  # type: ignore[attr-defined]
    assert '"arguments": {"city": "Paris"}' in prompt and '"id": "call_1"' in prompt  # the template's tool_calls
    assert "tool: sunny, 21 C" in prompt and '{"tool_calls"' not in prompt


def test_a_plain_answer_is_content(base_url: str, engine: Answering) -> None:
    engine.answer = "It is sunny in Paris."
    choice = ask(base_url).json()["choices"][0]
    assert choice["message"]["content"] == "It is sunny in Paris." and choice["finish_reason"] == "stop"


def test_streamed_calls_and_one_call_without_parallel_calls(base_url: str, engine: Answering) -> None:
    engine.answer = '[get_weather(city="Paris"), get_weather(city="Lyon")]'
    frames = ask(base_url, stream=True, parallel_tool_calls=False).text.split("\n\n")
    deltas = [json.loads(f[6:])["choices"][0] for f in frames if f.startswith("data: {")]
    calls = [c for d in deltas for c in d["delta"].get("tool_calls") or []]
    assert len(calls) == 1 and calls[0]["function"]["name"] == "get_weather"
    assert deltas[-1]["finish_reason"] == "tool_calls"


def test_required_and_named_choices_keep_the_grammar(base_url: str, engine: Answering) -> None:
    engine.answer = '[{"name": "get_weather", "arguments": {"city": "Paris"}}]'
    required = ask(base_url, tool_choice="required").json()["choices"][0]
    assert engine.asked[-1][1].structured is not None
    assert required["message"]["tool_calls"][0]["function"]["name"] == "get_weather"

    # A named choice: the grammar is that function's arguments object, and the answer is a call of it.
    engine.answer = '{"city": "Lyon"}'
    named = ask(base_url, tool_choice={"type": "function", "function": {"name": "get_weather"}}).json()["choices"][0]
    _, sampling = engine.asked[-1]
    assert sampling.structured is not None
    assert "city" in json.dumps(msgspec.to_builtins(sampling.structured))
    calls = named["message"]["tool_calls"]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("get_weather", {"city": "Lyon"})
    ]
    assert named["finish_reason"] in ("tool_calls", "stop")


def test_a_template_without_tools_keeps_the_grammar_and_an_unknown_parser_fails_the_start(
    native: Settings, model_dir: Path, tokenizer: object
) -> None:
    plain = Answering(tokenizer=AutoTokenizer.from_pretrained(model_dir))  # SmolLM2's own template
    generator = Generator(plain, native, Admission())  # type: ignore[arg-type]
    assert not generator.template_knows_tools and generator.tool_reader is None
    assert Generator(Answering(tokenizer=tokenizer), native, Admission()).tool_reader is not None  # type: ignore[arg-type]
    unknown = native.model_copy(update={"engine": native.engine.model_copy(update={"tool_call_parser": "nope"})})
    with pytest.raises(KeyError, match="nope"):
        Generator(Answering(tokenizer=tokenizer), unknown, Admission())  # type: ignore[arg-type]
