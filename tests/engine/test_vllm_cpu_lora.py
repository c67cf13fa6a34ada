"""vLLM's CPU LoRA ops (vllm-project/vllm#48421) with the fix of src/monolith/engine/vllm_cpu_lora.py: a row marked
-1 (no adapter) selects the last LoRA slot in vLLM's own ops, and is left alone with the fix, as the GPU kernels
leave it. The whole engine, base and twin requests in one step, is tested in tests/api/test_twins.py."""

from __future__ import annotations

import pytest
import torch
from vllm.lora.ops.torch_ops import lora_ops

from monolith.engine.vllm_cpu_lora import rows_with_adapter

SLOTS, RANK, HIDDEN, OUT = 2, 4, 8, 6


@pytest.fixture
def weights() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(SLOTS, 1, RANK, HIDDEN), torch.randn(SLOTS, 1, OUT, RANK)  # A (shrink), B (expand)


def lora_delta(op_shrink, op_expand, x, a, b, indices, base):
    """y = base + x @ A[i]^T @ B[i]^T for each row's slot i, through the shrink and expand ops."""
    shrunk = torch.zeros(x.shape[0], RANK)
    op_shrink(x, a, shrunk, indices, 1.0)
    out = base.clone()
    op_expand(shrunk, b, out, indices, add_inputs=True)
    return out


def test_vllms_own_ops_give_a_base_row_the_last_slots_adapter(weights) -> None:
    """The bug the plugin exists for: if vLLM fixes it, this goes red and the plugin can go."""
    a, b = weights
    x, base = torch.randn(2, HIDDEN), torch.zeros(2, OUT)
    indices = torch.tensor([0, -1])  # a twin's row, then a base row
    own = [getattr(op, "__wrapped__", op) for op in (lora_ops.bgmv_shrink, lora_ops.bgmv_expand)]  # patched or not
    out = lora_delta(*own, x, a, b, indices, base)
    assert not torch.equal(out[1], base[1]), "the base row got an adapter's weights"


@pytest.mark.parametrize("indices", [[0, -1, 1], [-1, -1, -1], [1, 0, 1], [-1, 1, -1]])
def test_with_the_fix_a_base_row_is_left_alone_and_a_twin_row_gets_its_own_slot(weights, indices) -> None:
    a, b = weights
    x, base = torch.randn(3, HIDDEN), torch.randn(3, OUT)
    index = torch.tensor(indices)
    shrink, expand = rows_with_adapter(lora_ops.bgmv_shrink), rows_with_adapter(lora_ops.bgmv_expand)
    out = lora_delta(shrink, expand, x, a, b, index, base)
    for row, slot in enumerate(indices):
        expected = base[row] if slot < 0 else base[row] + b[slot, 0] @ (a[slot, 0] @ x[row])
        assert torch.allclose(out[row], expected, atol=1e-5), (row, slot)


def test_the_sliced_expand_keeps_base_rows_too(weights) -> None:
    """The expand into one slice of a fused output (q, k, v side by side), as vLLM calls it per slice."""
    _, b = weights
    x, base = torch.randn(2, RANK), torch.randn(2, OUT + 3)
    fixed = rows_with_adapter(lora_ops.bgmv_expand_slice)
    out = base.clone()
    fixed(x, b, out, torch.tensor([-1, 1]), 3, OUT, True)
    assert torch.equal(out[0], base[0])
    assert torch.allclose(out[1, 3:], base[1, 3:] + b[1, 0] @ x[1], atol=1e-5)
    assert torch.equal(out[1, :3], base[1, :3])
