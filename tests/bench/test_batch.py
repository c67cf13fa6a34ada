"""Part 3 of the benchmark: both batch tools run for real on the same lines; the rate arithmetic."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from monolith.bench.batch import SYSTEMS, command, output_tokens, rates, write_requests
from monolith.bench.peers import ROOT, service_env, vllm_env
from monolith.bench.report import batch_markdown
from monolith.config import Settings
from monolith.jobs.lines import parse_line
from tests.conftest import CPU_CONFIG
from tests.helpers import run


def test_request_lines_are_valid_batch_input(tmp_path: Path) -> None:
    write_requests(tmp_path / "in.jsonl", 3, 5, "twin")
    raw = (tmp_path / "in.jsonl").read_bytes().splitlines()
    parsed = [parse_line(line, i) for i, line in enumerate(raw, 1)]
    assert [custom_id for custom_id, _, _ in parsed] == ["r0", "r1", "r2"]
    assert all(request is not None and error is None for _, request, error in parsed)


def test_rates_cancel_the_load_time_and_refuse_a_run_too_short_to_measure() -> None:
    row = rates("monolith batch", {10: 30.0, 50: 50.0}, {10: 160, 50: 800}, 50, 10)
    assert row["lines_per_s"] == 2.0 and row["output_tokens_per_s"] == 32.0
    with pytest.raises(RuntimeError, match="no longer"):
        rates("vllm run-batch", {10: 30.0, 50: 29.0}, {10: 160, 50: 800}, 50, 10)


def test_a_failed_output_line_fails_the_comparison(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    failed = {"custom_id": "r0", "response": {"status_code": 400, "body": {}}, "error": {"message": "bad"}}
    out.write_text(json.dumps(failed) + "\n")
    with pytest.raises(RuntimeError, match="failed"):
        output_tokens(out)


def test_batch_table_shows_the_ratio() -> None:
    rows = [rates(s, {1: 10.0, 3: 12.0}, {1: 4, 3: 12}, 3, 1) for s in SYSTEMS]
    batch = {"lines": 3, "small": 1, "max_tokens": 4, "rows": rows, "throughput_ratio": 1.0}
    text = "\n".join(batch_markdown(batch))
    assert "| monolith batch | 12.0 | 1.0 | 4.0 |" in text and "throughput: 1.0" in text


@pytest.mark.slow
def test_both_batch_tools_answer_the_same_lines(tmp_path: Path, model_dir: Path, settings: Settings) -> None:
    source = tmp_path / "in.jsonl"
    write_requests(source, 3, 4, settings.engine.served_model_name)
    env = {**os.environ, **service_env(tmp_path / "data", model_dir), **vllm_env(settings)}
    for system in SYSTEMS:
        output = tmp_path / f"{system.split()[0]}.jsonl"
        cmd = command(system, CPU_CONFIG, settings, model_dir, source, output)
        done = run(cmd, 600, cwd=ROOT, env=env)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert output_tokens(output) == 3 * 4  # ignore_eos: every line gives its full budget
    # chat lines only: the monolith loaded no embedder and built no store
    assert not (tmp_path / "data" / "qdrant").exists()
