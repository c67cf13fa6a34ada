"""The embedded default checkpoint: converted from the packaged GGUF once, then reused."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from monolith.config import ConfigError, GgufSource, Settings
from monolith.model_prep import checkpoint_ready, conversion_lock, prepare_model


def test_checkpoint_is_plain_bf16_safetensors_with_a_chat_template(model_dir: Path) -> None:
    assert checkpoint_ready(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"
    size_mb = sum(f.stat().st_size for f in model_dir.glob("*.safetensors")) / 1e6
    assert 200 < size_mb < 350
    assert (model_dir / "chat_template.jinja").exists() or "chat_template" in (
        model_dir / "tokenizer_config.json"
    ).read_text()


def test_prepare_is_idempotent(model_dir: Path, settings: Settings) -> None:
    cached = settings.model_copy(update={"engine": settings.engine.model_copy(update={"model": str(model_dir)})})
    before = {f: f.stat().st_mtime_ns for f in model_dir.iterdir()}
    assert prepare_model(cached) == model_dir
    assert {f: f.stat().st_mtime_ns for f in model_dir.iterdir()} == before


def test_missing_package_is_a_config_error(settings: Settings) -> None:
    engine = settings.engine.model_copy(update={"prepare_from": GgufSource(package="no_such_package_xyz")})
    with pytest.raises(ConfigError, match="not installed"):
        prepare_model(settings.model_copy(update={"engine": engine}))


def test_no_checkpoint_and_no_source_is_a_config_error(settings: Settings) -> None:
    engine = settings.engine.model_copy(update={"prepare_from": None, "model": "models/absent"})
    with pytest.raises(ConfigError, match="not a checkpoint"):
        prepare_model(settings.model_copy(update={"engine": engine}))


def test_a_process_that_finds_the_conversion_under_way_waits_and_then_converts_nothing(
    model_dir: Path, settings: Settings
) -> None:
    """Replicas or test workers sharing a data dir: one converts, the others wait on its lock and then take the
    checkpoint it made (two conversions at once wrote into the same .partial folder)."""
    target = settings.in_data_dir(settings.engine.model)
    target.parent.mkdir(parents=True)
    result: list[Path] = []
    with conversion_lock(target):  # the converting process
        waiting = threading.Thread(target=lambda: result.append(prepare_model(settings)))
        waiting.start()
        waiting.join(timeout=1.0)
        assert waiting.is_alive() and not target.exists(), "it must wait for the conversion under way"
        shutil.copytree(model_dir, target)  # what the converting process leaves behind
        made = {f.name: f.stat().st_mtime_ns for f in target.iterdir()}
    waiting.join(timeout=30)
    assert result == [target]
    assert {f.name: f.stat().st_mtime_ns for f in target.iterdir()} == made, "nothing converted again"
