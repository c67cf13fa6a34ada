"""A vLLM general plugin (entry point `vllm.general_plugins`, see pyproject.toml) that keeps a base request from
picking up an adapter's weights on vLLM's CPU backend (vllm-project/vllm#48421).

Why: vLLM marks a token that belongs to no adapter with the LoRA index -1. Its GPU kernels skip such rows; the
PyTorch ops that the CPU backend runs (`vllm.lora.ops.torch_ops`) select `weights[indices]`, and -1 selects the
*last* LoRA slot. So when one engine step holds a base request beside a twin's, and the last slot holds an
adapter, the base request is answered with that adapter's weights: silently another person's twin.

The fix gives the ops the GPU kernels' meaning: rows whose index is -1 are left untouched (the base layer's
output stays as it was); the others are computed by vLLM's own op on just those rows. A step whose tokens all
belong to adapters, or none (vLLM skips a prefill with no adapter itself), costs one check more.

vLLM loads general plugins in every process it starts (the engine core is spawned on CPU, so a patch made in
the server's own process would not reach it); on any other platform this does nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

_PATCHED = "_monolith_cpu_lora"
# The row-wise ops that take (inputs, weights, output, indices, ...); the sgmv_* ops call these by name.
ROW_OPS = ("bgmv_shrink", "bgmv_expand", "bgmv_expand_slice")


def register() -> None:
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.lora.ops.torch_ops import lora_ops
    from vllm.lora.punica_wrapper import punica_cpu

    if getattr(lora_ops, _PATCHED, False):
        return  # plugins may be loaded more than once in a process
    for name in ROW_OPS:
        fixed = rows_with_adapter(getattr(lora_ops, name))
        setattr(lora_ops, name, fixed)  # what sgmv_* look up when they run
        setattr(punica_cpu, name, fixed)  # what the CPU wrapper imported by name
    setattr(lora_ops, _PATCHED, True)


def rows_with_adapter(op: Callable[..., None]) -> Callable[..., None]:
    """`op` applied only to the rows whose LoRA index is an adapter's; the rows marked -1 keep their output."""

    def run(inputs: Any, weights: Any, output: Any, indices: Any, *args: Any, **kwargs: Any) -> None:
        keep = indices >= 0
        if bool(keep.all()):
            op(inputs, weights, output, indices, *args, **kwargs)
            return
        rows = keep.nonzero().squeeze(1)
        if rows.numel() == 0:
            return
        part = output[rows]  # a copy: the op writes into it, then it goes back to its rows
        op(inputs[rows], weights, part, indices[rows], *args, **kwargs)
        output[rows] = part

    return functools.wraps(op)(run)  # __wrapped__: vLLM's own op, for the test that shows the bug
