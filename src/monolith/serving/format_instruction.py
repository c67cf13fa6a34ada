"""What a chat model is told when its answer must be JSON: the grammar makes every token fit the schema, but a
model that has never seen the schema does not know what the fields mean, and a small one loops inside a string
until max_tokens (SmolLM2-135M on LangChain's Joke schema: `{"setup":"no, no, no, …`). The tools path has always
shown its functions; this shows a `response_format` (or vLLM's `structured_outputs`) json schema, or says "a JSON
object", the same way: a system-message instruction. Not when the client's messages state it already."""

from __future__ import annotations

import json
from typing import Any

JSON_OBJECT = "Answer with one JSON object."


def format_instruction(
    structured: dict[str, Any], name: str | None = None, description: str | None = None
) -> str | None:
    """The instruction for an engine constraint (`json`: a schema, `json_object`), None for the others (a regex, a
    choice, a grammar say nothing a model could read)."""
    if structured.get("json_object"):
        return JSON_OBJECT
    schema = structured.get("json")
    if schema is None:
        return None
    if isinstance(schema, str):  # structured_outputs.json may be the schema as text
        try:
            schema = json.loads(schema)
        except ValueError:
            return None
    named = f' "{name}"' if name else ""
    about = f" ({description})" if description else ""
    shown = json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
    return f"Answer with one JSON object{named}{about} that follows this JSON schema: {shown}"


def already_stated(messages: list[dict[str, Any]], structured: dict[str, Any]) -> bool:
    """Whether the client's messages carry what the instruction would: for a JSON object, the word JSON (OpenAI
    asks for it in json_object mode); for a schema, the schema itself as JSON text (compact, spaced or indented,
    as the frameworks' format instructions paste it)."""
    texts = [m["content"] for m in messages if isinstance(m.get("content"), str)]
    if structured.get("json_object"):
        return any("json" in text.lower() for text in texts)
    schema = structured.get("json")
    if isinstance(schema, str):
        return any(schema in text for text in texts)
    spellings = {
        json.dumps(schema, ensure_ascii=False, separators=(",", ":")),
        json.dumps(schema, ensure_ascii=False),
        json.dumps(schema, ensure_ascii=False, indent=2),
        json.dumps(schema),
    }
    return any(spelling in text for text in texts for spelling in spellings)


def with_instruction(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """`text` joined to the system message, or as a new one first."""
    if messages and messages[0]["role"] == "system" and isinstance(messages[0].get("content"), str):
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]
