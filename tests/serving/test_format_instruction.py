"""The answer's JSON format shown to the model (serving.format_instruction): exactly when the constraint is a JSON
schema or object, not when the messages state it already, not when turned off; its tokens in the usage. The real
app and the real tokenizer, a scripted engine answering (what it was asked is decoded back)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from transformers import AutoTokenizer

from monolith.config import Settings
from monolith.serving.format_instruction import JSON_OBJECT, already_stated, format_instruction, with_instruction
from tests.api.test_native_tools import Answering
from tests.conftest import free_port
from tests.scripted import ThreadedServer

TEMPLATE = (
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<a>{% endif %}"
)
JOKE = {
    "type": "object",
    "properties": {"setup": {"type": "string"}, "punchline": {"type": "string"}},
    "required": ["setup", "punchline"],
}
SHOWN = "Answer with one JSON object"
ASK = [{"role": "user", "content": "Tell me a joke about cats."}]


def schema_format(schema: dict = JOKE) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "Joke", "description": "A joke", "schema": schema}}


@pytest.fixture
def engine(model_dir: Path) -> Answering:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = TEMPLATE
    return Answering(tokenizer=tokenizer, answer='{"setup": "a", "punchline": "b"}')  # type: ignore[arg-type]


def serve(settings: Settings, engine: Answering, describe: bool = True) -> ThreadedServer:
    engine_settings = settings.engine.model_copy(update={"describe_response_format": describe})
    return ThreadedServer(settings.model_copy(update={"engine": engine_settings}), engine, free_port())


@pytest.fixture
def base_url(settings: Settings, engine: Answering) -> Iterator[str]:
    with serve(settings, engine) as server:
        yield server.base_url


def ask(base_url: str, engine: Answering, **body: object) -> tuple[str, int]:
    """What the model was shown, and the prompt tokens the answer's usage says."""
    request = {"model": "twin", "messages": ASK, **body}
    answered = httpx.post(f"{base_url}/v1/chat/completions", json=request, timeout=30)
    assert answered.status_code == 200, answered.text
    prompt_ids = engine.asked[-1][0]
    assert answered.json()["usage"]["prompt_tokens"] == len(prompt_ids)
    return engine.tokenizer.decode(prompt_ids), len(prompt_ids)


def test_a_json_schema_is_shown_to_the_model_and_its_tokens_counted(base_url: str, engine: Answering) -> None:
    plain, plain_tokens = ask(base_url, engine)
    shown, shown_tokens = ask(base_url, engine, response_format=schema_format())
    assert SHOWN not in plain
    assert shown.startswith("<system>" + SHOWN + ' "Joke" (A joke) that follows this JSON schema: ')
    assert json.dumps(JOKE, separators=(",", ":")) in shown and shown.endswith(plain)
    instruction = engine.tokenizer.encode(shown.removesuffix(plain), add_special_tokens=False)
    assert shown_tokens == plain_tokens + len(instruction), "usage counts the instruction's tokens"


def test_a_json_object_is_asked_for_and_vllms_structured_outputs_too(base_url: str, engine: Answering) -> None:
    shown, _ = ask(base_url, engine, response_format={"type": "json_object"})
    assert shown.startswith(f"<system>{JSON_OBJECT}\n")
    shown, _ = ask(base_url, engine, structured_outputs={"json": JOKE})
    assert json.dumps(JOKE, separators=(",", ":")) in shown
    shown, _ = ask(base_url, engine, structured_outputs={"json_object": True})
    assert shown.startswith(f"<system>{JSON_OBJECT}\n")


def test_a_system_message_gets_the_instruction_after_its_own_text(base_url: str, engine: Answering) -> None:
    messages = [{"role": "system", "content": "You are terse."}, *ASK]
    shown, _ = ask(base_url, engine, messages=messages, response_format={"type": "json_object"})
    assert shown.startswith(f"<system>You are terse.\n\n{JSON_OBJECT}\n") and shown.count("<system>") == 1


@pytest.mark.parametrize(
    ("content", "response_format"),
    [
        ("Tell me a joke as JSON.", {"type": "json_object"}),
        (f"Follow this schema: {json.dumps(JOKE)}", schema_format()),
        (f"Schema:\n{json.dumps(JOKE, indent=2)}", schema_format()),
    ],
)
def test_nothing_is_added_when_the_messages_state_it(
    base_url: str, engine: Answering, content: str, response_format: dict
) -> None:
    shown, _ = ask(base_url, engine, messages=[{"role": "user", "content": content}], response_format=response_format)
    assert SHOWN not in shown and "<system>" not in shown


@pytest.mark.parametrize(
    "body",
    [
        {"structured_outputs": {"regex": "[a-z]+"}},
        {"structured_outputs": {"choice": ["yes", "no"]}},
        {"response_format": {"type": "text"}},
    ],
)
def test_nothing_is_added_for_a_constraint_a_model_cannot_read(base_url: str, engine: Answering, body: dict) -> None:
    shown, _ = ask(base_url, engine, **body)
    assert "<system>" not in shown


def test_turned_off_the_messages_go_as_they_came(settings: Settings, engine: Answering) -> None:
    with serve(settings, engine, describe=False) as server:
        shown, _ = ask(server.base_url, engine, response_format=schema_format())
    assert "<system>" not in shown and SHOWN not in shown


def test_the_pure_functions_agree() -> None:
    assert format_instruction({"regex": "a"}) is None and format_instruction({"json": "not json"}) is None
    assert format_instruction({"json": json.dumps(JOKE)}) == format_instruction({"json": JOKE})
    assert already_stated([{"role": "user", "content": json.dumps(JOKE)}], {"json": json.dumps(JOKE)})
    assert not already_stated([{"role": "user", "content": "a joke"}], {"json_object": True})
    system = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert with_instruction(system, "x")[0] == {"role": "system", "content": "s\n\nx"}
    assert with_instruction(system[1:], "x") == [{"role": "system", "content": "x"}, system[1]]
