"""How often a model under the tools' grammar writes the arguments a request states, and one call: 34 requests of
our own (a function, a question that gives its values), in `required`, `auto` and named mode, with this server's
instruction against the old one (the tools' JSON schemas after "You have these functions"), greedy, sampled and
with a frequency penalty. In-process vLLM, the server's own prompt, grammar and answer reading (serving.tools);
the numbers behind engine.tool_temperature and engine.tool_frequency_penalty (docs/api/openai.md, tool calling).

    python -m monolith.bench.tool_args [--model DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from monolith.protocol.chat import ChatCompletionRequest
from monolith.serving import tools
from monolith.serving.format_instruction import with_instruction


def fn(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    parameters = {"type": "object", "properties": properties, "required": list(properties)}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


# One request a line: a function (name, description, properties, all required), a question, the arguments it states.
CASES_FILE = Path(__file__).with_suffix(".jsonl")


def cases() -> list[tuple[dict[str, Any], str, dict[str, Any]]]:
    out = []
    for line in CASES_FILE.read_text().splitlines():
        case = json.loads(line)
        tool = fn(case["name"], case["description"], case["properties"])
        out.append((tool, case["question"], case["arguments"]))
    return out


def old_instructions(plan: tools.ToolPlan) -> str:
    """The instruction before the signatures (the peer): the tools' JSON schemas as a list."""
    listing = json.dumps(
        [
            {
                "name": t.function.name,
                "description": t.function.description or "",
                "parameters": tools.arguments_schema(t),
            }
            for t in plan.tools
        ],
        ensure_ascii=False,
    )
    if plan.mode == "named":
        return f"Call the function {plan.named}. Answer with its arguments as one JSON object.\nFunction: {listing}"
    calls = '[{"name": <function name>, "arguments": {<arguments>}}]'
    if plan.mode == "required":
        return f"You have these functions: {listing}\nCall one or more of them. Answer with JSON: {calls}"
    return (
        f"You have these functions: {listing}\nTo call functions, answer with JSON: "
        f'{{"tool_calls": {calls}}}. To answer the user, answer with JSON: {{"content": <your answer>}}. '
        "Once a function's result is in the conversation, do not call it again: answer the user with it."
    )


INSTRUCTIONS: dict[str, Callable[[tools.ToolPlan], str]] = {"signatures": tools.instructions, "old": old_instructions}
# name: (temperature, frequency penalty, seeds)
SAMPLINGS = {"greedy": (0.0, 0.0, [0]), "greedy, f0.5": (0.0, 0.5, [0]), "t0.7 (3 seeds)": (0.7, 0.0, [1, 2, 3])}


def plan_for(tool: dict[str, Any], question: str, mode: str) -> tools.ToolPlan:
    choice: Any = {"type": "function", "function": {"name": tool["function"]["name"]}} if mode == "named" else mode
    body = {
        "model": "twin",
        "messages": [{"role": "user", "content": question}],
        "tools": [tool],
        "tool_choice": choice,
    }
    plan = tools.plan_tools(msgspec.convert(body, ChatCompletionRequest))
    assert plan is not None
    return plan


def score(plan: tools.ToolPlan, text: str, want: dict[str, Any]) -> tuple[bool, bool]:
    """(the first call's arguments are the stated ones, exactly one call after repeats are dropped)."""
    calls = tools.parse_answer(plan, text).calls
    args = [json.loads(c["function"]["arguments"]) for c in calls]
    return bool(args) and args[0] == want, len(calls) == 1


def run(model: str) -> list[dict[str, Any]]:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    from vllm import LLM, SamplingParams
    from vllm.config import StructuredOutputsConfig
    from vllm.sampling_params import StructuredOutputsParams

    compact = StructuredOutputsConfig(backend="xgrammar", disable_any_whitespace=True)
    llm = LLM(model=model, dtype="float32", max_model_len=2048, enforce_eager=True, structured_outputs_config=compact)
    tokenizer = llm.get_tokenizer()
    rows, requests = [], cases()
    for mode in ("required", "auto", "named"):
        for name, instruct in INSTRUCTIONS.items():
            for label, (temperature, frequency, seeds) in SAMPLINGS.items():
                right = one = cut = tokens = 0
                for seed in seeds:
                    plans = [plan_for(tool, question, mode) for tool, question, _ in requests]
                    prompts = [
                        tokenizer.apply_chat_template(
                            with_instruction([{"role": "user", "content": q}], instruct(plan)),
                            tokenize=False,
                            add_generation_prompt=True,
                        )
                        for plan, (_, q, _) in zip(plans, requests, strict=True)
                    ]
                    params = [
                        SamplingParams(
                            temperature=temperature,
                            frequency_penalty=frequency,
                            seed=seed,
                            max_tokens=200,
                            structured_outputs=StructuredOutputsParams(json=plan.schema),
                        )
                        for plan in plans
                    ]
                    for plan, out, (_, _, want) in zip(plans, llm.generate(prompts, params), requests, strict=True):
                        done = out.outputs[0]
                        ok, single = score(plan, done.text, want)
                        right, one = right + ok, one + single
                        cut, tokens = cut + (done.finish_reason == "length"), tokens + len(done.token_ids)
                n = len(requests) * len(seeds)
                rows.append(
                    {"mode": mode, "instruction": name, "sampling": label, "right": right / n, "one_call": one / n,
                     "cut": cut / n, "tokens": tokens / n}
                )  # fmt: skip
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    count = len(cases())
    lines = [
        f"{count} requests, SmolLM2-135M-Instruct. right: the first call's arguments are the ones the question"
        " states; one call: exactly one after repeats are dropped; cut: at max_tokens (200).",
        "",
        "| mode | instruction | sampling | right | one call | cut | tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['instruction']} | {r['sampling']} | {r['right'] * count:.1f}/{count} "
            f"| {r['one_call'] * count:.1f} | {r['cut'] * count:.1f} | {r['tokens']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="data/models/SmolLM2-135M-Instruct")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    text = table(run(args.model))
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
