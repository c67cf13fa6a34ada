"""Settings: YAML plus MONOLITH_<SECTION>__<KEY> overrides, one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from monolith.config import RENAMED, ConfigError, Section, Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["cpu.yaml", "gpu.yaml", "twins.yaml"])
def test_shipped_configs_load(name: str) -> None:
    settings = load_settings(ROOT / "configs" / name)
    assert settings.engine.served_model_name == "twin"


def test_gpu_config_serves_the_twin_on_cuda() -> None:
    settings = load_settings(ROOT / "configs" / "gpu.yaml")
    assert settings.engine.model == "mlabonne/TwinLlama-3.1-8B-DPO"
    assert settings.engine.max_model_len == 4096
    assert settings.embedder.device == "cuda" and settings.rerank.device == "cuda"
    assert settings.model_path == "mlabonne/TwinLlama-3.1-8B-DPO"  # a hub id, not a data-dir path


def test_unknown_key_fails_with_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "engine:\n  max_model_length: 10\n"))
    message = str(err.value)
    assert "\n" not in message
    assert "engine.max_model_length" in message


def test_invalid_value_names_the_key_and_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "engine:\n  max_num_seqs: zero\n"))
    message = str(err.value)
    assert "engine.max_num_seqs" in message and "integer" in message and "'zero'" in message


def test_chunk_overlap_must_be_below_size(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ingest\.post"):
        load_settings(write(tmp_path, "ingest:\n  post: {size: 100, overlap: 100}\n"))


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONOLITH_ENGINE__MAX_NUM_SEQS", "3")
    monkeypatch.setenv("MONOLITH_SERVER__PORT", "9001")
    settings = load_settings(write(tmp_path, "engine:\n  max_num_seqs: 8\n  max_model_len: 512\n"))
    assert settings.engine.max_num_seqs == 3
    assert settings.engine.max_model_len == 512  # untouched keys of the same section survive
    assert settings.server.port == 9001


def test_invalid_environment_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONOLITH_RAG__K", "-1")
    with pytest.raises(ConfigError, match=r"rag\.k"):
        load_settings(ROOT / "configs" / "cpu.yaml")


def test_missing_file_and_bad_yaml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path, "engine: [\n"))


def test_relative_paths_live_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, f"data_dir: {tmp_path}\n"))
    assert settings.in_data_dir("qdrant") == tmp_path / "qdrant"
    assert settings.in_data_dir("/abs/path") == Path("/abs/path")


def test_an_unsupported_database_url_fails_without_echoing_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MONOLITH_STORE__DATABASE", "mysql://user:hunter2@db/jobs")
    with pytest.raises(ConfigError) as err:
        load_settings(ROOT / "configs" / "cpu.yaml")
    assert "store.database" in str(err.value) and "hunter2" not in str(err.value)


@pytest.mark.parametrize("url", ["postgresql://u:p@h:5432/d", "postgres://u:p@h/d", "sqlite:////tmp/j.db", "j.db"])
def test_database_takes_a_sqlite_path_or_a_postgresql_url(monkeypatch, url: str) -> None:
    monkeypatch.setenv("MONOLITH_STORE__DATABASE", url)
    assert load_settings(ROOT / "configs" / "cpu.yaml").store.database == url


def test_a_heartbeat_too_close_to_the_lease_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="heartbeat_s"):
        load_settings(write(tmp_path, "store:\n  lease_s: 5\n  heartbeat_s: 2\n"))


def fields(model: type[BaseModel], prefix: str = "") -> dict[str, object]:
    found: dict[str, object] = {}
    for name, info in model.model_fields.items():
        nested = info.annotation if isinstance(info.annotation, type) and issubclass(info.annotation, Section) else None
        found.update(fields(nested, f"{prefix}{name}.") if nested else {f"{prefix}{name}": info})
    return found


def test_every_setting_says_what_it_is_for() -> None:
    undescribed = [key for key, info in fields(Settings).items() if not info.description]  # type: ignore[attr-defined]
    assert undescribed == []


def leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    found: dict[str, object] = {}
    for key, value in tree.items():
        deeper = isinstance(value, dict) and key not in {"prepare_from"}
        found.update(leaves(value, f"{prefix}{key}.") if deeper else {f"{prefix}{key}": value})
    return found


@pytest.mark.parametrize("name", ["cpu.yaml", "gpu.yaml", "twins.yaml"])
def test_a_shipped_config_sets_only_what_differs_from_the_defaults(name: str) -> None:
    written = leaves(yaml.safe_load((ROOT / "configs" / name).read_text()))
    defaults = leaves(Settings.model_construct().model_dump(mode="json"))
    assert [key for key, value in written.items() if defaults.get(key) == value] == []


@pytest.mark.parametrize(("old", "new"), sorted(RENAMED.items()))
def test_a_key_that_moved_says_where_to_in_the_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: tuple[str, str], new: str
) -> None:
    section, key = old
    with pytest.raises(ConfigError, match=f"^config error: {section}.{key} is now {new}$"):
        load_settings(write(tmp_path, f"{section}:\n  {key}: 1\n"))
    monkeypatch.setenv(f"MONOLITH_{section.upper()}__{key.upper()}", "1")
    with pytest.raises(ConfigError, match=f"is now {new}"):
        load_settings(ROOT / "configs" / "cpu.yaml")


def test_twins_load_from_the_file_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("twins:\n  ada:\n    adapter: adapters/ada\n    author: Ada Lindqvist\n")
    twins = load_settings(path).twins
    assert twins["ada"].adapter == "adapters/ada" and twins["ada"].author == "Ada Lindqvist"
    monkeypatch.setenv("MONOLITH_TWINS", '{"jonas": {"adapter": "hub-owner/jonas-lora"}}')
    both = load_settings(path).twins  # the environment's twins join the file's
    assert (
        list(both) == ["ada", "jonas"] and both["jonas"].adapter == "hub-owner/jonas-lora" and not both["jonas"].author
    )


@pytest.mark.parametrize(
    ("twins", "why"),
    [
        ("twin: {adapter: a}", "twins.twin: the name 'twin' is taken by the base model"),
        ("twin-rag: {adapter: a}", "twins.twin-rag: the name 'twin-rag' is taken by the base model's RAG alias"),
        ("all-MiniLM-L6-v2: {adapter: a}", "the name 'all-MiniLM-L6-v2' is taken by the embedder"),
        ("ada: {adapter: a}\n  ada-rag: {adapter: b}", "twins.ada-rag: the name 'ada-rag' is taken by the twin 'ada'"),
        ("'a b': {adapter: a}", "twins: Value error, the twin name 'a b' must be"),
        ("'': {adapter: a}", "the twin name '' must be"),
        ("ada: {author: Ada}", "twins.ada.adapter: Field required"),
        ("ada: {adapter: a, rank: 8}", "twins.ada.rank: Extra inputs are not permitted"),
    ],
)
def test_a_twin_name_that_means_something_else_fails_at_start(tmp_path: Path, twins: str, why: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"twins:\n  {twins}\n")
    with pytest.raises(ConfigError, match=why.replace("(", r"\(")):
        load_settings(path)


def test_a_twin_may_not_take_the_rerankers_name(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("rerank: {model: models/ms-marco}\ntwins:\n  ms-marco: {adapter: a}\n")
    with pytest.raises(ConfigError, match="the name 'ms-marco' is taken by the reranker"):
        load_settings(path)


def test_a_config_extends_another_and_sets_only_what_differs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = write(tmp_path, "engine:\n  max_num_seqs: 8\n  dtype: float32\nrag:\n  k: 3\n")
    (tmp_path / "over.yaml").write_text(f"extends: {base.name}\nengine:\n  max_num_seqs: 4\n")
    settings = load_settings(tmp_path / "over.yaml")
    assert (settings.engine.max_num_seqs, settings.engine.dtype, settings.rag.k) == (4, "float32", 3)
    monkeypatch.setenv("MONOLITH_ENGINE__MAX_NUM_SEQS", "2")  # the environment still wins
    assert load_settings(tmp_path / "over.yaml").engine.max_num_seqs == 2


def test_extends_must_name_a_file_that_exists_without_a_loop(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"missing\.yaml not found"):
        load_settings(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("extends: b.yaml\n")
    with pytest.raises(ConfigError, match="a chain of at most"):
        load_settings(tmp_path / "b.yaml")
    (tmp_path / "c.yaml").write_text("extends: [a.yaml]\n")
    with pytest.raises(ConfigError, match="extends names one file"):
        load_settings(tmp_path / "c.yaml")


def test_the_lora_limits_take_the_environments_strings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONOLITH_ENGINE__MAX_LORA_RANK", "8")
    monkeypatch.setenv("MONOLITH_ENGINE__MAX_LORAS", "2")
    engine = load_settings(write(tmp_path, "")).engine
    assert (engine.max_lora_rank, engine.max_loras) == (8, 2)
    monkeypatch.setenv("MONOLITH_ENGINE__MAX_LORA_RANK", "12")
    with pytest.raises(ConfigError, match=r"engine\.max_lora_rank: .*one of vLLM.s LoRA ranks 1, 8, 16"):
        load_settings(write(tmp_path, ""))
