"""`monolith twins build` (src/monolith/training.py): a demo LoRA per twin of the config, trained with peft on its
author's documents, that the adapter check and the engine take; the shipped twins config names every author of
the sample corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from monolith.config import ConfigError, Settings, TwinSettings, load_settings
from monolith.engine.adapters import check_adapters
from monolith.training import Recipe, author_texts, build_twins

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus" / "sample.jsonl"


def twins_settings(settings: Settings, model_dir: Path, **authors: str) -> Settings:
    engine = settings.engine.model_copy(update={"model": str(model_dir), "prepare_from": None})
    twins = {name: TwinSettings(adapter=f"adapters/{name}", author=author) for name, author in authors.items()}
    ingest = settings.ingest.model_copy(update={"sample_corpus": str(CORPUS)})
    return settings.model_copy(update={"engine": engine, "twins": twins, "ingest": ingest})


def test_a_demo_twin_is_trained_on_its_authors_documents_and_passes_the_adapter_check(settings, model_dir) -> None:
    ada = twins_settings(settings, model_dir, ada="Ada Lindqvist")
    built = build_twins(ada, Recipe(steps=2, window=64, batch=2))
    folder = built["ada"]
    assert folder == settings.data_dir / "adapters" / "ada" and not folder.with_name("ada.partial").exists()
    assert check_adapters(ada)["ada"].rank == 8
    weights = load_file(folder / "adapter_model.safetensors")
    # PEFT starts B at zero (the base unchanged); two steps of training moved it.
    assert any(name.endswith("lora_B.weight") and weights[name].abs().sum() > 0 for name in weights)
    modified = folder.stat().st_mtime
    assert build_twins(ada, Recipe(steps=2))["ada"] == folder and folder.stat().st_mtime == modified, "kept"


def test_a_demo_twin_needs_documents_by_its_author(settings, model_dir) -> None:
    with pytest.raises(ConfigError, match=r"twins\.nobody: .* has no documents by No Body"):
        build_twins(twins_settings(settings, model_dir, nobody="No Body"), Recipe(steps=1))


def test_the_twins_config_has_a_twin_for_each_author_of_the_sample_corpus() -> None:
    twins = load_settings(ROOT / "configs" / "twins.yaml").twins
    authors = {json.loads(line)["author_full_name"] for line in CORPUS.read_text().splitlines()}
    assert {twin.author for twin in twins.values()} == authors
    assert all(author_texts(CORPUS, author) for author in authors)
