"""Twins for the tests: small LoRA adapters made by `peft` on the embedded default's base model, seeded so that
each is the same every run (seconds on a CPU), and the config that serves them."""

from __future__ import annotations

import json
from pathlib import Path

# Two of the sample corpus's authors (corpus/sample.jsonl), each with a twin.
AUTHORS = {"ada": "Ada Lindqvist", "jonas": "Jonas Weber"}
SEEDS = {"ada": 1, "jonas": 2}


def make_adapter(base: Path, folder: Path, seed: int, rank: int = 8) -> Path:
    """A LoRA on the attention's q and v projections with random A and B (PEFT's default B is zero, which would
    change nothing): the twin's greedy text differs from the base's within a few tokens."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(folder)
    return folder


def make_twins(base: Path, folder: Path) -> dict[str, Path]:
    return {name: make_adapter(base, folder / name, SEEDS[name]) for name in AUTHORS}


def twins_env(adapters: dict[str, Path], **engine: str) -> dict[str, str]:
    """The environment that serves `adapters` as twins, each reading its author's documents."""
    twins = {name: {"adapter": str(path), "author": AUTHORS[name]} for name, path in adapters.items()}
    return {"MONOLITH_TWINS": json.dumps(twins), **{f"MONOLITH_ENGINE__{k.upper()}": v for k, v in engine.items()}}
