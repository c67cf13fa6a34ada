"""The engine: its contract (`contract`: what serving may ask of an engine, and the values that cross it), chat
templating, and the vLLM adapter (`vllm_engine`, `vllm_tools`, `vllm_stats`, and `vllm_cpu_seed`, a plugin vLLM
loads: the only modules that import vllm, and only when an engine is built). Importing this package loads no
model and no vllm."""

from monolith.engine.chat_template import chat_prompt_ids
from monolith.engine.contract import (
    CallReader,
    Delta,
    Engine,
    EngineStats,
    EngineTimings,
    Sampling,
    Tokenizer,
    TokenLogprob,
    sampling_field,
)

__all__ = [
    "CallReader",
    "Delta",
    "Engine",
    "EngineStats",
    "EngineTimings",
    "Sampling",
    "TokenLogprob",
    "Tokenizer",
    "chat_prompt_ids",
    "sampling_field",
]
