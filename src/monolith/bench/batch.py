"""Part 3 of `make bench`: `monolith batch` against `vllm run-batch` on the same JSONL and engine settings.

Each side runs on `lines` and on `small` lines; (lines - small) / (T_lines - T_small) is the processing
rate with process start and model load cancelled out. Sides run one after the other, never together.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from monolith.bench.peers import ROOT, service_env, vllm_engine_args, vllm_env
from monolith.config import Settings

SYSTEMS = ("monolith batch", "vllm run-batch")


def write_requests(path: Path, lines: int, max_tokens: int, model: str) -> None:
    with path.open("w") as f:
        for i in range(lines):
            body = {
                "model": model,
                "messages": [{"role": "user", "content": f"Write a short note about topic number {i}."}],
                "max_tokens": max_tokens,
                "temperature": 0.0,
                "ignore_eos": True,  # the same output length on both sides
            }
            line = {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
            f.write(json.dumps(line) + "\n")


def output_tokens(path: Path) -> int:
    """Completion tokens over the output file; a failed line is an error, not a silently faster run."""
    total = 0
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record.get("error") or record["response"]["status_code"] != 200:
            raise RuntimeError(f"a batch line failed: {line[:300]}")
        total += record["response"]["body"]["usage"]["completion_tokens"]
    return total


def command(system: str, config: Path, settings: Settings, model_dir: Path, source: Path, output: Path) -> list[str]:
    if system == "monolith batch":
        in_flight = str(settings.engine.max_num_seqs * 4)  # keep the engine full, as run-batch does
        cli = [sys.executable, "-m", "monolith.cli", "--config", str(config), "batch", str(source), str(output)]
        return [*cli, "--max-in-flight", in_flight]
    run_batch = [sys.executable, "-m", "vllm.entrypoints.openai.run_batch", "-i", str(source), "-o", str(output)]
    return run_batch + vllm_engine_args(settings, model_dir)


def timed(cmd: list[str], env: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as out:
        result = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{cmd[2]} exited {result.returncode}, see {log}")
    return time.perf_counter() - started


def rates(system: str, seconds: dict[int, float], tokens: dict[int, int], lines: int, small: int) -> dict:
    extra_s = seconds[lines] - seconds[small]
    if extra_s <= 0:
        raise RuntimeError(f"{system}: {lines} lines took no longer than {small}; make the runs longer")
    return {
        "system": system,
        "wall_s": round(seconds[lines], 1),
        "wall_small_s": round(seconds[small], 1),
        "lines_per_s": round((lines - small) / extra_s, 3),
        "output_tokens_per_s": round((tokens[lines] - tokens[small]) / extra_s, 2),
    }


def compare(config: Path, settings: Settings, model_dir: Path, work: Path, lines: int, small: int, tokens: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **service_env(work / "batch-data", model_dir), **vllm_env(settings)}
    seconds: dict[str, dict[int, float]] = {s: {} for s in SYSTEMS}
    produced: dict[str, dict[int, int]] = {s: {} for s in SYSTEMS}
    for n in (small, lines):
        source = work / f"batch-in-{n}.jsonl"
        write_requests(source, n, tokens, settings.engine.served_model_name)
        for system in SYSTEMS:
            tag = system.split()[0]
            output = work / f"batch-out-{tag}-{n}.jsonl"
            output.unlink(missing_ok=True)
            cmd = command(system, config, settings, model_dir, source, output)
            seconds[system][n] = timed(cmd, env, work / f"batch-{tag}-{n}.log")
            produced[system][n] = output_tokens(output)
            print(json.dumps({"system": system, "lines": n, "wall_s": round(seconds[system][n], 1)}), flush=True)
    rows = [rates(s, seconds[s], produced[s], lines, small) for s in SYSTEMS]
    return {
        "lines": lines,
        "small": small,
        "max_tokens": tokens,
        "rows": rows,
        "throughput_ratio": round(rows[0]["lines_per_s"] / rows[1]["lines_per_s"], 3),
    }
