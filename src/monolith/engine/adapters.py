"""The twins' LoRA adapters, checked before the engine loads: each must be a readable PEFT LoRA made for this base
model and within the engine's rank. vLLM would find most of this only when the first request for the twin
arrives (and fail that request); here a bad twin stops start-up with its name and why, and readiness never turns
200 on a half-loaded set."""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from monolith.config import ConfigError, Settings, TwinSettings

WEIGHTS = "adapter_model.safetensors"
# A hub id (`owner/name`), fetched at start-up like engine.model; anything else must be a folder.
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# The prefix PEFT writes before a module's name, and the LoRA matrices' suffixes.
PEFT_PREFIX = "base_model.model."
LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<which>[AB])\.weight$")
MAX_HEADER_BYTES = 100_000_000  # a safetensors header is JSON: a bound before reading one


@dataclass(frozen=True)
class Adapter:
    """A twin's checked adapter: its name (what clients ask for), its folder, where the config said it comes
    from (`/v1/models`'s `root`), and its rank."""

    name: str
    path: Path
    source: str
    rank: int


def check_adapters(settings: Settings) -> dict[str, Adapter]:
    """Every twin's adapter, checked against the base model; the first bad one raises a ConfigError naming it."""
    base = base_shapes(settings.model_path)
    return {name: check_adapter(name, twin, settings, base) for name, twin in settings.twins.items()}


def check_adapter(name: str, twin: TwinSettings, settings: Settings, base: dict[str, list[int]] | None) -> Adapter:
    path = locate(name, twin.adapter, settings)
    config = read_config(name, path)
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"twins.{name}: {path}/adapter_config.json has no LoRA rank `r`")
    if rank > settings.engine.max_lora_rank:
        raise ConfigError(
            f"twins.{name}: the adapter's rank is {rank}, above engine.max_lora_rank {settings.engine.max_lora_rank}"
        )
    weights = path / WEIGHTS
    if not weights.is_file():
        raise ConfigError(f"twins.{name}: {path} has no {WEIGHTS}")
    shapes = safetensors_shapes(weights, name)
    if base is not None:
        check_fits_base(name, shapes, base)
    return Adapter(name, path, twin.adapter, rank)


def locate(name: str, adapter: str, settings: Settings) -> Path:
    local = settings.in_data_dir(adapter)
    if local.is_dir():
        return local
    if not HUB_ID.match(adapter) or local.exists():
        raise ConfigError(f"twins.{name}: the adapter folder {local} does not exist")
    from huggingface_hub import snapshot_download  # the operator's config names it, never a client

    try:
        return Path(snapshot_download(adapter))
    except Exception as exc:  # any failure to fetch is this twin's start-up error
        raise ConfigError(
            f"twins.{name}: the adapter folder {local} does not exist, and {adapter} could not be fetched from the "
            f"hub ({type(exc).__name__})"
        ) from None


def read_config(name: str, path: Path) -> dict:
    file = path / "adapter_config.json"
    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"twins.{name}: {file} cannot be read: {exc}") from None
    if not isinstance(config, dict) or config.get("peft_type", "LORA") != "LORA":
        raise ConfigError(f"twins.{name}: {file} is not a PEFT LoRA adapter's config")
    return config


def safetensors_shapes(file: Path, name: str) -> dict[str, list[int]]:
    """Each tensor's shape, from the file's JSON header alone (no weights are read)."""
    try:
        with file.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > MAX_HEADER_BYTES:
                raise ValueError(f"a header of {size} bytes")
            header = json.loads(f.read(size))
    except (OSError, ValueError, struct.error) as exc:
        raise ConfigError(f"twins.{name}: {file} is not a safetensors file: {exc}") from None
    return {key: value["shape"] for key, value in header.items() if key != "__metadata__"}


def base_shapes(model: Path | str) -> dict[str, list[int]] | None:
    """The base model's weight shapes by name, from its local safetensors headers; None for a hub id (vLLM's
    load at start-up still checks the adapters then)."""
    folder = Path(model)
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return None
    shapes: dict[str, list[int]] = {}
    for file in files:
        shapes.update(safetensors_shapes(file, "base"))
    return shapes


def check_fits_base(name: str, adapter: dict[str, list[int]], base: dict[str, list[int]]) -> None:
    """Each LoRA pair must adapt a module the base has, with its input (A) and output (B) sizes: an adapter made
    for another base model fails here, named, instead of loading garbage or failing a request."""
    found = 0
    for key, shape in adapter.items():
        match = LORA_KEY.match(key.removeprefix(PEFT_PREFIX))
        if match is None:
            continue
        found += 1
        module = match["module"]
        weight = base.get(module + ".weight")
        if weight is None or len(weight) != 2:
            raise ConfigError(f"twins.{name}: the adapter changes {module}, which this base model does not have")
        out_features, in_features = weight
        size, expected = (shape[-1], in_features) if match["which"] == "A" else (shape[0], out_features)
        if size != expected:
            raise ConfigError(
                f"twins.{name}: the adapter was made for another base model: {module} takes {expected} features "
                f"here, the adapter's {size}"
            )
    if not found:
        raise ConfigError(f"twins.{name}: the adapter holds no LoRA weights")
