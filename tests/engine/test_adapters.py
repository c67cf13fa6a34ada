"""The twins' adapters checked before the engine loads (src/monolith/engine/adapters.py): a bad one is named with
why, before start-up spends its time on the engine; a good one passes. Adapters made by peft, a real base model's
safetensors headers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from monolith.config import ConfigError, Settings, TwinSettings
from monolith.engine.adapters import check_adapters

BASE_CONFIG = {"model_type": "llama", "vocab_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}


def with_twins(settings: Settings, model_dir: Path, **adapters: str) -> Settings:
    engine = settings.engine.model_copy(update={"model": str(model_dir), "prepare_from": None})
    twins = {name: TwinSettings(adapter=path) for name, path in adapters.items()}
    return settings.model_copy(update={"engine": engine, "twins": twins})


def test_peft_adapters_for_this_base_pass_with_their_rank(settings, model_dir, twin_adapters) -> None:
    checked = check_adapters(with_twins(settings, model_dir, **{n: str(p) for n, p in twin_adapters.items()}))
    assert set(checked) == {"ada", "jonas"}
    assert checked["ada"].rank == 8 and checked["ada"].path == twin_adapters["ada"]


def test_a_relative_adapter_is_read_from_the_data_dir(settings, model_dir, twin_adapters) -> None:
    shutil.copytree(twin_adapters["ada"], settings.data_dir / "adapters" / "ada")
    checked = check_adapters(with_twins(settings, model_dir, ada="adapters/ada"))
    assert checked["ada"].path == settings.data_dir / "adapters" / "ada" and checked["ada"].source == "adapters/ada"


def broken(folder: Path, source: Path, change: str) -> Path:
    shutil.copytree(source, folder)
    config = folder / "adapter_config.json"
    if change == "no folder":
        shutil.rmtree(folder)
    elif change == "no config":
        config.unlink()
    elif change == "config not json":
        config.write_text("{not json")
    elif change == "not lora":
        config.write_text(json.dumps({**json.loads(config.read_text()), "peft_type": "PREFIX_TUNING"}))
    elif change == "rank too high":
        config.write_text(json.dumps({**json.loads(config.read_text()), "r": 64}))
    elif change == "no weights":
        (folder / "adapter_model.safetensors").unlink()
    elif change == "weights not safetensors":
        (folder / "adapter_model.safetensors").write_bytes(b"\xff" * 16)
    return folder


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("no folder", "does not exist"),
        ("no config", "cannot be read"),
        ("config not json", "cannot be read"),
        ("not lora", "not a PEFT LoRA"),
        ("rank too high", "rank is 64, above engine.max_lora_rank 16"),
        ("no weights", "has no adapter_model.safetensors"),
        ("weights not safetensors", "is not a safetensors file"),
    ],
)
def test_a_bad_adapter_is_named_with_why(settings, model_dir, twin_adapters, tmp_path, change, why) -> None:
    folder = broken(tmp_path / "bad", twin_adapters["jonas"], change)
    with pytest.raises(ConfigError, match=f"^twins.jonas: .*{why}"):
        check_adapters(with_twins(settings, model_dir, ada=str(twin_adapters["ada"]), jonas=str(folder)))


def test_an_adapter_made_for_another_base_model_is_refused(settings, model_dir, tmp_path) -> None:
    """A LoRA made by peft on a smaller Llama (hidden size 32): its q_proj takes 32 features, the base's 576."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.twins import make_adapter

    torch.manual_seed(0)
    other = LlamaConfig(hidden_size=32, intermediate_size=64, num_key_value_heads=2, **BASE_CONFIG)
    LlamaForCausalLM(other).save_pretrained(tmp_path / "other-base")
    adapter = make_adapter(tmp_path / "other-base", tmp_path / "other-twin", seed=3)
    with pytest.raises(ConfigError, match=r"^twins.ada: the adapter was made for another base model: .*q_proj"):
        check_adapters(with_twins(settings, model_dir, ada=str(adapter)))


def test_an_adapter_for_layers_the_base_does_not_have_is_refused(settings, model_dir, tmp_path) -> None:
    """Same sizes, more layers than the base's 30: the adapter's layer 30 adapts nothing here."""
    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    from tests.twins import make_adapter

    config = AutoConfig.from_pretrained(model_dir)
    config.num_hidden_layers += 1
    config.vocab_size = 64
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "deeper")
    adapter = make_adapter(tmp_path / "deeper", tmp_path / "deeper-twin", seed=4)
    with pytest.raises(ConfigError, match=r"^twins.ada: the adapter changes model.layers.30.self_attn"):
        check_adapters(with_twins(settings, model_dir, ada=str(adapter)))
