"""GGUF -> safetensors checkpoint for the embedded default (vLLM's CPU build loads safetensors)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from filelock import FileLock

from monolith.config import ConfigError, Settings
from monolith.packaged import package_dir

log = logging.getLogger(__name__)


def checkpoint_ready(path: Path) -> bool:
    return (path / "config.json").exists() and any(path.glob("*.safetensors")) and (path / "tokenizer.json").exists()


def gguf_path(package: str, filename: str) -> Path:
    folder = package_dir(package)
    if folder is None:
        raise ConfigError(f"engine.prepare_from.package: {package} is not installed (run `make install`)")
    path = folder / filename
    if not path.exists():
        raise ConfigError(f"engine.prepare_from.file: {filename} not found in package {package}")
    return path


def conversion_lock(target: Path) -> FileLock:
    """Held by the one process converting into `target`, beside it in the data dir."""
    return FileLock(target.with_name(target.name + ".lock"))


def prepare_model(settings: Settings) -> Path:
    """Idempotent: returns the checkpoint directory, converting the packaged GGUF only when missing. Processes
    that share a data dir (replicas on one volume, test workers) convert it once: the others wait on a lock."""
    target = settings.in_data_dir(settings.engine.model)
    source = settings.engine.prepare_from
    if checkpoint_ready(target):
        return target
    if source is None:
        raise ConfigError(f"engine.model: {target} is not a checkpoint and engine.prepare_from is not set")
    target.parent.mkdir(parents=True, exist_ok=True)
    with conversion_lock(target):
        if not checkpoint_ready(target):  # another process may have converted it while this one waited
            _convert(source.package, source.file, target)
    return target


def _convert(package: str, filename: str, target: Path) -> None:
    gguf = gguf_path(package, filename)
    log.info("converting %s to a safetensors checkpoint in %s", gguf.name, target)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Stored in bf16 (half the disk of fp32, and the GGUF's 4-bit weights lose nothing in it); the
    # engine casts to engine.dtype when it loads the checkpoint.
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are already dequantized in memory; transformers refuses to save a model that
    # still carries its GGUF quantizer, and the saved config must not claim a quantization.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
