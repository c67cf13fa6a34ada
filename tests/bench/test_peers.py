"""The peers get the monolith's engine settings as flags that vLLM's own parsers take, for every config:
the harness must run unchanged with configs/gpu.yaml, where no GPU is here to try it."""

from __future__ import annotations

from pathlib import Path

import pytest

from monolith.bench.peers import ROOT, vllm_engine_args
from monolith.config import load_settings


def _serve_parser():
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    return make_arg_parser(FlexibleArgumentParser())


def _run_batch_parser():
    from vllm.entrypoints.launchers.run_batch import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    return make_arg_parser(FlexibleArgumentParser())


@pytest.mark.parametrize("config", ["cpu.yaml", "gpu.yaml"])
def test_vllm_parsers_take_the_engine_flags_with_the_configs_values(config: str, tmp_path: Path) -> None:
    settings = load_settings(ROOT / "configs" / config)
    cfg = settings.engine
    flags = vllm_engine_args(settings, tmp_path / "model")
    serve = _serve_parser().parse_args(flags)
    batch = _run_batch_parser().parse_args(["-i", "in.jsonl", "-o", "out.jsonl", *flags])
    for args in (serve, batch):
        assert args.model == str(tmp_path / "model")
        assert args.served_model_name == [cfg.served_model_name]
        assert (args.dtype, args.max_model_len, args.max_num_seqs) == (cfg.dtype, cfg.max_model_len, cfg.max_num_seqs)
        assert args.enforce_eager is cfg.enforce_eager
        assert args.tensor_parallel_size == cfg.tensor_parallel_size
        assert args.gpu_memory_utilization == cfg.gpu_memory_utilization
        assert args.max_num_batched_tokens == cfg.max_num_batched_tokens
        assert args.block_size == cfg.block_size
