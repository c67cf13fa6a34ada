"""vLLM's tool-call parsers, read by the chat path when `engine.tool_call_parser` is set."""

from __future__ import annotations

from typing import Any


class ToolCallReader:
    """vLLM's own tool-call parser (`engine.tool_call_parser`), which reads the calls a model writes its own way
    (Llama 3.1's JSON) out of a whole answer; what tool_choice "auto" uses when the chat template knows tools."""

    def __init__(self, name: str, tokenizer: Any) -> None:
        from vllm.tool_parsers.abstract_tool_parser import ToolParserManager

        self._parser = ToolParserManager.get_tool_parser(name)  # an unknown name raises here, at start
        self._tokenizer = tokenizer
        self._parser(tokenizer)  # so does a parser that cannot read this tokenizer (a token it needs is missing)

    def read(self, text: str, tools: list[dict[str, Any]]) -> tuple[str | None, list[tuple[str, str]]]:
        """(content, [(function name, arguments as JSON)]) of one answer."""
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

        request = ChatCompletionRequest(model="-", messages=[], tools=tools, tool_choice="auto")
        found = self._parser(self._tokenizer, request.tools).extract_tool_calls(text, request)
        if not found.tools_called:
            return text, []
        return found.content or None, [(c.function.name, c.function.arguments) for c in found.tool_calls]
