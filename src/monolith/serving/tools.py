"""Tool calling on any model: the tools go into the prompt (through the chat template where it knows tools,
else as a system message), and the answer is constrained by a JSON schema built from them, so that even a
135M model returns calls whose arguments satisfy their tool's schema (TGI's approach).

- `required`: a JSON array of one or more calls (one only with parallel_tool_calls false).
- a named function: that function's arguments object.
- `auto`: one object, either {"tool_calls": [...]} or {"content": "..."}: the "no tool" alternative.
- `none`: no tools offered, plain text.
- `native` (`auto` where engine.tool_call_parser is set and the chat template knows tools, as Llama 3.1's
  does): no grammar; the template shows the tools and vLLM's parser for that model reads the calls.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from monolith.errors import BadRequest
from monolith.protocol.chat import ChatCompletionRequest, ChatMessage, NamedToolChoice, Tool
from monolith.serving.format_instruction import with_instruction

# Calls in one answer at most (parallel_tool_calls), so a small model cannot loop on calls until max_tokens.
MAX_PARALLEL_CALLS = 8
# Where the array of calls opens in a constrained answer, per mode (a named choice has no array).
CALLS_OPENING = {"required": re.compile(r"\s*\[\s*"), "auto": re.compile(r'\s*\{\s*"tool_calls"\s*:\s*\[\s*')}
NEVER = re.compile(r"(?!)")
BETWEEN_CALLS = re.compile(r"\s*,?\s*")


# The model's own reading of its answer (native mode): (content, [(function name, arguments as JSON)]).
CallReader = Callable[[str], tuple[str | None, list[tuple[str, str]]]]


@dataclass
class ToolPlan:
    """How one chat request uses its tools; `mode` is "required", "auto", "named" or "native"."""

    mode: str
    tools: list[Tool]
    schema: dict[str, Any]
    named: str | None = None
    parallel: bool = True
    reader: CallReader | None = None  # native mode


@dataclass
class ParsedAnswer:
    content: str | None
    calls: list[dict[str, Any]] = field(default_factory=list)


def arguments_schema(tool: Tool) -> dict[str, Any]:
    return tool.function.parameters or {"type": "object", "properties": {}}


def calls_schema(tools: list[Tool], parallel: bool) -> dict[str, Any]:
    one = {
        "anyOf": [
            {
                "type": "object",
                "properties": {"name": {"const": t.function.name}, "arguments": arguments_schema(t)},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for t in tools
        ]
    }
    return {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_PARALLEL_CALLS if parallel else 1}


def auto_schema(tools: list[Tool], parallel: bool) -> dict[str, Any]:
    reply = {
        "type": "object",
        "properties": {"content": {"type": "string"}},
        "required": ["content"],
        "additionalProperties": False,
    }
    call = {
        "type": "object",
        "properties": {"tool_calls": calls_schema(tools, parallel)},
        "required": ["tool_calls"],
        "additionalProperties": False,
    }
    return {"anyOf": [call, reply]}


def plan_tools(data: ChatCompletionRequest, native: bool = False) -> ToolPlan | None:
    """None: answer in plain text (no tools, or tool_choice "none"). `native`: `auto` is answered the model's
    own way (the caller sets the plan's reader)."""
    tools, choice = data.tools or [], data.tool_choice
    if not tools:
        if choice not in (None, "none", "auto"):
            raise BadRequest("tool_choice needs tools", param="tool_choice")
        return None
    names = [t.function.name for t in tools]
    if len(set(names)) != len(names):
        raise BadRequest("two tools have the same name", param="tools")
    if choice == "none":
        return None
    if isinstance(choice, NamedToolChoice):
        tool = next((t for t in tools if t.function.name == choice.function.name), None)
        if tool is None:
            raise BadRequest(f"tool_choice names '{choice.function.name}', which is not in tools", param="tool_choice")
        return ToolPlan("named", [tool], arguments_schema(tool), named=tool.function.name)
    parallel = data.parallel_tool_calls
    if choice == "required":
        return ToolPlan("required", tools, calls_schema(tools, parallel), parallel=parallel)
    if native:
        return ToolPlan("native", tools, {}, parallel=parallel)
    return ToolPlan("auto", tools, auto_schema(tools, parallel), parallel=parallel)


def tool_dicts(plan: ToolPlan) -> list[dict[str, Any]]:
    """The tools as a chat template (and vLLM's parser) takes them."""
    return [msgspec.to_builtins(t) for t in plan.tools]


# The framing of the function-calling data SmolLM2 and other small open models were tuned on (APIGen's). Measured
# with the signatures below against the old listing (the JSON schemas after "You have these functions"), on 34
# single-call requests of our own (monolith.bench.tool_args), SmolLM2-135M, greedy: arguments right 25/34 (was 16)
# under `required`, 21/34 (was 14) under `auto`, 26/34 (was 23) for a named function.
COMPOSING = (
    "You are an expert in composing functions. You are given a question and a set of possible functions. "
    "Based on the question, you will need to make one or more function/tool calls to achieve the purpose."
)
CALL_EXAMPLE = '{"name": "func_name1", "arguments": {"argument1": "value1", "argument2": "value2"}}'
# How deep a parameter's type is spelled out in a signature; deeper, the grammar still holds the whole schema.
MAX_TYPE_DEPTH = 3


def type_text(schema: Any, depth: int = 0) -> str:
    """A JSON schema as a short type: `integer`, `"a" | "b"`, `array of string`, `{city: string, days?: integer}`."""
    if not isinstance(schema, dict) or depth > MAX_TYPE_DEPTH:
        return "any"
    if "enum" in schema and isinstance(schema["enum"], list):
        return " | ".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"], ensure_ascii=False)
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return " | ".join(type_text(s, depth + 1) for s in schema[key])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    if kind == "array":
        return f"array of {type_text(schema.get('items'), depth + 1)}"
    if kind == "object" and isinstance(schema.get("properties"), dict) and depth:
        return "{" + fields_text(schema, depth + 1) + "}"
    return str(kind or "any")


def fields_text(schema: dict[str, Any], depth: int) -> str:
    """`name: type` per property, `name?` where it is not required."""
    required = set(schema.get("required") or ())
    properties = schema.get("properties") or {}
    return ", ".join(
        f"{name}{'' if name in required else '?'}: {type_text(sub, depth)}" for name, sub in properties.items()
    )


def signature(tool: Tool) -> str:
    """A function as a small model reads it best: `name(arg: type, ...): description`, then a line per described
    argument (a call written like the signature is how the user's values reach the right arguments)."""
    parameters = arguments_schema(tool)
    head = f"- {tool.function.name}({fields_text(parameters, 1)})"
    lines = [f"{head}: {tool.function.description}" if tool.function.description else head]
    for name, sub in (parameters.get("properties") or {}).items():
        if isinstance(sub, dict) and isinstance(sub.get("description"), str) and sub["description"]:
            lines.append(f"    {name}: {sub['description']}")
    return "\n".join(lines)


def instructions(plan: ToolPlan) -> str:
    """The system text that tells a model without a tool-aware template what it may call and how to answer
    (the grammar enforces the shape; this tells the model what the shape means)."""
    listing = "\n".join(signature(t) for t in plan.tools)
    if plan.mode == "named":
        return f"Call the function {plan.named}. Answer with its arguments as one JSON object.\nFunction:\n{listing}"
    head = f"{COMPOSING}\n\nYou have access to the following functions:\n{listing}\n\n"
    if plan.mode == "required":
        return f"{head}Answer with a JSON list of calls, in this format:\n[{CALL_EXAMPLE}]"
    return (
        f'{head}To call functions, answer with JSON: {{"tool_calls": [{CALL_EXAMPLE}]}}. '
        'To answer the user, answer with JSON: {"content": <your answer>}. '
        "Once a function's result is in the conversation, do not call it again: answer the user with it."
    )


def history_message(
    message: ChatMessage, content: str, names: dict[str, str], native: bool, native_calls: bool = False
) -> dict[str, Any]:
    """An earlier turn as the template takes it: an assistant's calls as the JSON it would have written (or, with
    `native_calls`, as the template's own tool_calls). A tool's result goes under role "tool" to a template that
    knows tools (`native`), else as a user turn that says which function answered (a template without tools has
    never seen a "tool" role). `names`: call id -> function."""
    if message.role == "assistant" and message.tool_calls and native_calls:
        calls = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.function.name, "arguments": parsed_arguments(c.function.arguments)},
            }
            for c in message.tool_calls
        ]
        return {"role": "assistant", "content": content, "tool_calls": calls}
    if message.role == "assistant" and message.tool_calls:
        calls = [
            {"name": c.function.name, "arguments": parsed_arguments(c.function.arguments)} for c in message.tool_calls
        ]
        text = json.dumps({"tool_calls": calls}, ensure_ascii=False)
        return {"role": "assistant", "content": f"{content}\n{text}" if content else text}
    if message.role == "tool":
        if not native:
            name = names.get(message.tool_call_id or "", "a function")
            return {"role": "user", "content": f"The result of {name}: {content}\nUse it to answer."}
        turn = {"role": "tool", "content": content}
        return {**turn, "tool_call_id": message.tool_call_id} if message.tool_call_id else turn
    return {"role": message.role, "content": content}


def call_names(messages: list[ChatMessage]) -> dict[str, str]:
    return {c.id: c.function.name for m in messages for c in (m.tool_calls or [])}


def parsed_arguments(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def with_tools(messages: list[dict[str, Any]], plan: ToolPlan) -> list[dict[str, Any]]:
    """The tool instructions joined to the system message, or as a new one first."""
    return with_instruction(messages, instructions(plan))


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def as_call(name: str, arguments: Any) -> dict[str, Any]:
    encoded = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {"id": call_id(), "type": "function", "function": {"name": name, "arguments": encoded}}


def parse_answer(plan: ToolPlan, text: str) -> ParsedAnswer:
    """The constrained answer as content or calls (one cut short by max_tokens: see cut_short); a native
    answer as the model's parser reads it (at most one call without parallel_tool_calls)."""
    if plan.mode == "native" and plan.reader is not None:
        content, calls = plan.reader(text)
        return ParsedAnswer(content, as_calls(calls)[: plan_limit(plan)])
    try:
        value = json.loads(text)
    except ValueError:
        return cut_short(plan, text)
    if plan.mode == "named":
        return ParsedAnswer(None, [as_call(plan.named or "", value)])
    if plan.mode == "auto":
        if isinstance(value, dict) and "content" in value:
            return ParsedAnswer(str(value["content"]))
        value = value.get("tool_calls") if isinstance(value, dict) else None
    if not isinstance(value, list):
        return ParsedAnswer(text)
    return ParsedAnswer(None, as_calls((c["name"], c["arguments"]) for c in value if isinstance(c, dict)))


def as_calls(pairs: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
    """(function, arguments) pairs as calls, without repeats of an earlier one (same function, same arguments): a
    small model under the calls grammar writes the same call again and again until the array's bound, and no
    client wants a call twice in one answer (it would run it twice). A call that differs in any argument is kept."""
    seen: set[tuple[str, str]] = set()
    calls = []
    for name, arguments in pairs:
        key = (name, canonical(arguments))
        if key not in seen:
            seen.add(key)
            calls.append(as_call(name, arguments))
    return calls


def canonical(arguments: Any) -> str:
    """Arguments as one spelling (key order and spacing aside): a value, or JSON text, or text as it is."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return arguments
    return json.dumps(arguments, sort_keys=True, ensure_ascii=False)


def plan_limit(plan: ToolPlan) -> int:
    return MAX_PARALLEL_CALLS if plan.parallel else 1


def cut_short(plan: ToolPlan, text: str) -> ParsedAnswer:
    """An answer that max_tokens cut: the calls it finished (a small model may repeat calls until the budget
    ends), or the text so far of an `auto` {"content": "..."}; else the raw text."""
    opening = CALLS_OPENING.get(plan.mode, NEVER).match(text)
    if opening is not None:
        calls, decoder, at = [], json.JSONDecoder(), opening.end()
        while True:
            try:
                call, at = decoder.raw_decode(text, at)
            except ValueError:
                break
            if isinstance(call, dict) and "name" in call and "arguments" in call:
                calls.append((call["name"], call["arguments"]))
            at = BETWEEN_CALLS.match(text, at).end()  # type: ignore[union-attr]
        if calls:
            return ParsedAnswer(None, as_calls(calls))
    if plan.mode == "auto":
        for ending in ('"}', '\\"}', "}"):
            try:
                value = json.loads(text + ending)
            except ValueError:
                continue
            if isinstance(value, dict) and isinstance(value.get("content"), str):
                return ParsedAnswer(value["content"])
    return ParsedAnswer(text)
