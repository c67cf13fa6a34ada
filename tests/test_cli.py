"""The `monolith` entry point, run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "corpus" / "sample.jsonl"


def monolith(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "monolith.cli", *args], timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def test_bad_config_fails_at_start_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("server:\n  prot: 8000\n")
    result = monolith("serve", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "server.prot" in result.stderr


def test_bad_environment_override_fails_at_start(tmp_path: Path) -> None:
    result = monolith("serve", env={"MONOLITH_SERVER__PORT": "eighty"})
    assert result.returncode == 2 and "server.port" in result.stderr


def test_ingest_twice_adds_nothing_the_second_time(tmp_path: Path) -> None:
    env = {"MONOLITH_DATA_DIR": str(tmp_path)}
    first = monolith("ingest", str(SAMPLE), env=env)
    assert first.returncode == 0, first.stderr
    assert "30 documents" in first.stdout and "0 bad lines" in first.stdout
    second = monolith("ingest", str(SAMPLE), env=env)
    assert ", 0 new points" in second.stdout
    assert (tmp_path / "qdrant").is_dir()


def test_ingest_of_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = monolith("ingest", str(tmp_path / "nope.jsonl"), env={"MONOLITH_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2 and "not found" in result.stderr


@pytest.mark.slow
def test_generate_streams_an_answer_to_the_terminal(model_dir: Path) -> None:
    result = monolith(
        "generate",
        "Say hello.",
        "--max-tokens",
        "8",
        "--temperature",
        "0",
        env={"MONOLITH_ENGINE__MODEL": str(model_dir)},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip()
