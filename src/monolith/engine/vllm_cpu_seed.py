"""A vLLM general plugin (entry point `vllm.general_plugins`, see pyproject.toml) that keeps a client's `seed`
from killing the engine on vLLM's CPU backend.

Why: a request with a `seed` gets its own torch.Generator. When its prompt is prefilled in chunks (any prompt
longer than engine.max_num_batched_tokens, or a short one that shares a step with others), the token sampled
after a partial chunk is thrown away and vLLM 0.32 rewinds the generator with `set_offset(get_offset() - 4)`,
which only CUDA's Philox generators have: a CPU generator raises "CPU Generator does not use offset" inside
the engine core, the engine dies, and every request on the replica fails (found by `make soak`; the same bug
as vllm-project/vllm#10097's note "relies on cuda-specific torch-internal impl details"). One client field
must not take a replica down.

The fix keeps vLLM's meaning exactly: before sampling, the state of each generator whose row will be
discarded is saved (CPU generators are a Mersenne Twister whose state `get_state` returns); vLLM's rewind loop
is shown no generator for those rows, and afterwards each gets its saved state back, as if the discarded token
had never been drawn. A seeded answer is then the same whether its prompt was prefilled in one step or many.

vLLM loads general plugins in every process it starts (the engine core is spawned on CPU, so a patch made in
the server's own process would not reach it); on any other platform this does nothing.
"""

from __future__ import annotations

from typing import Any

_PATCHED = "_monolith_cpu_seed"


def register() -> None:
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner  # the CPU model runner's base

    if getattr(GPUModelRunner, _PATCHED, False):
        return  # plugins may be loaded more than once in a process
    patch(GPUModelRunner)


def discarded_generators(runner: Any) -> dict[int, Any]:
    """The per-request generators of the rows whose sampled token this step throws away."""
    import numpy as np

    generators = runner.input_batch.generators
    rows = np.nonzero(runner.discard_request_mask.np[: runner.input_batch.num_reqs])[0]
    return {int(i): generators[int(i)] for i in rows if int(i) in generators}


def patch(runner_class: type) -> None:
    original_sample = runner_class._sample
    original_bookkeeping = runner_class._bookkeeping_sync

    def _sample(self: Any, *args: Any, **kwargs: Any) -> Any:
        self._monolith_saved_rng = {i: (g, g.get_state()) for i, g in discarded_generators(self).items()}
        return original_sample(self, *args, **kwargs)

    def _bookkeeping_sync(self: Any, *args: Any, **kwargs: Any) -> Any:
        saved = getattr(self, "_monolith_saved_rng", {})
        self._monolith_saved_rng = {}
        generators = self.input_batch.generators
        # Every discarded row's generator leaves the dict while vLLM's CUDA-only rewind runs (a row not saved
        # above, which no code path here makes, keeps the advanced state rather than crash the engine).
        held = {i: generators.pop(i) for i in list(discarded_generators(self))}
        try:
            return original_bookkeeping(self, *args, **kwargs)
        finally:
            generators.update(held)
            for generator, state in saved.values():
                generator.set_state(state)

    runner_class._sample = _sample
    runner_class._bookkeeping_sync = _bookkeeping_sync
    setattr(runner_class, _PATCHED, True)
