"""A chat rendered by the model's own template into prompt token ids."""

from __future__ import annotations

from typing import Any

from monolith.engine.contract import Tokenizer
from monolith.errors import BadRequest


def chat_prompt_ids(
    tokenizer: Tokenizer,
    messages: list[dict[str, Any]],
    add_generation_prompt: bool = True,
    tools: list[dict[str, Any]] | None = None,
) -> list[int]:
    """The model's own chat template, the assistant turn opened unless `add_generation_prompt` is false, and
    `tools` shown the template's way when given. A template that refuses the turns (roles that do not alternate,
    a role it does not know) raises from its own code: the client's messages, a 400."""
    from jinja2 import TemplateError

    extra = {"tools": tools} if tools else {}
    try:
        out = tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=add_generation_prompt, **extra
        )
    except TemplateError as exc:
        raise BadRequest(f"the model's chat template refused the messages: {exc}", param="messages") from None
    ids = out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out
    return list(ids)
