"""Demo twins on the embedded default: a small LoRA adapter for each twin of the config, trained with `peft` on its
author's documents in the sample corpus (a few minutes on a CPU for the 135M base). Not a recipe for a real twin
(that is a fine-tune on a person's whole writing, on a GPU): enough for a newcomer to see a twin write unlike the
base, and for the tests and the benchmark to serve real adapters. `monolith twins build` (`make twins`) runs it."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from monolith.config import ConfigError, Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """How a demo adapter is trained: small on purpose (rank 8 on two projections: cheap in every engine step)."""

    steps: int = 60
    rank: int = 8
    learning_rate: float = 1e-3
    window: int = 256  # tokens a training example holds
    batch: int = 4
    seed: int = 0


def author_texts(corpus: Path, author: str) -> list[str]:
    """The author's documents in a JSONL corpus (the sample's format: `author_full_name`, `content`)."""
    texts = []
    with corpus.open() as f:
        for line in f:
            doc = json.loads(line)
            if doc.get("author_full_name") == author and doc.get("content"):
                texts.append(doc["content"])
    return texts


def build_twins(settings: Settings, recipe: Recipe, force: bool = False) -> dict[str, Path]:
    """An adapter for each twin of the config whose folder is missing (all of them with `force`), trained on the
    twin's author's documents from `ingest.sample_corpus`. Returns every twin's folder."""
    corpus = Path(settings.ingest.sample_corpus or "")
    if not corpus.is_file():
        raise ConfigError(f"ingest.sample_corpus: {corpus} is not a file to train the twins on")
    built = {}
    for name, twin in settings.twins.items():
        folder = settings.in_data_dir(twin.adapter)
        built[name] = folder
        if (folder / "adapter_config.json").exists() and not force:
            log.info("twin %s: %s exists, kept", name, folder)
            continue
        if not twin.author:
            raise ConfigError(f"twins.{name}: a demo twin needs an author to train on")
        texts = author_texts(corpus, twin.author)
        if not texts:
            raise ConfigError(f"twins.{name}: {corpus} has no documents by {twin.author}")
        train_adapter(Path(settings.model_path), texts, folder, recipe)
        log.info("twin %s: trained on %d documents by %s into %s", name, len(texts), twin.author, folder)
    return built


def train_adapter(base: Path, texts: list[str], folder: Path, recipe: Recipe) -> Path:
    """A LoRA on the attention's q and v projections, trained for `recipe.steps` steps of causal language modelling
    on windows of the texts; written atomically (a folder that exists is a whole adapter)."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError("peft is needed to train the demo twins: pip install 'monolith[twins]'") from None

    torch.manual_seed(recipe.seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=recipe.rank, lora_alpha=2 * recipe.rank, target_modules=["q_proj", "v_proj"])
    peft_model = get_peft_model(model, config)
    windows = token_windows(tokenizer, texts, recipe.window)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=recipe.learning_rate)
    peft_model.train()
    generator = torch.Generator().manual_seed(recipe.seed)
    for step in range(recipe.steps):
        picked = torch.randint(len(windows), (min(recipe.batch, len(windows)),), generator=generator)
        ids = torch.nn.utils.rnn.pad_sequence(
            [windows[i] for i in picked.tolist()], batch_first=True, padding_value=-100
        )
        mask = ids != -100
        loss = peft_model(input_ids=ids.clamp(min=0), attention_mask=mask, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 10 == 0 or step == recipe.steps - 1:
            log.info("step %d/%d: loss %.3f", step + 1, recipe.steps, loss.item())
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    peft_model.save_pretrained(partial)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def token_windows(tokenizer, texts: list[str], window: int) -> list:
    """Each text as token ids (with the end-of-text token), cut into windows of at most `window` tokens."""
    import torch

    windows = []
    for text in texts:
        ids = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
        windows += [
            torch.tensor(ids[i : i + window]) for i in range(0, len(ids), window) if len(ids[i : i + window]) > 1
        ]
    return windows
