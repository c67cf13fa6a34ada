"""`monolith batch` against `vllm run-batch` on the same JSONL, model and engine settings, one after the other.

Each side is run on N and on a small n lines; (N - n) / (T_N - T_n) is the processing rate with the engine's
load time cancelled out. Usage: python bench/batch_compare.py [--lines 200] [--small 40] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from monolith.config import load_settings  # noqa: E402
from monolith.model_prep import prepare_model  # noqa: E402


def write_requests(path: Path, lines: int, max_tokens: int) -> None:
    with path.open("w") as f:
        for i in range(lines):
            body = {
                "model": "twin",
                "messages": [{"role": "user", "content": f"Write a short note about topic number {i}."}],
                "max_tokens": max_tokens,
                "temperature": 0.0,
                "ignore_eos": True,  # same output length on both sides
            }
            f.write(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}))
            f.write("\n")


def timed(command: list[str], env: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as out:
        result = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"{command[:4]} failed, see {log}")
    return time.perf_counter() - started


def output_tokens(path: Path) -> int:
    return sum(
        json.loads(line)["response"]["body"]["usage"]["completion_tokens"] for line in path.read_text().splitlines()
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=str(ROOT / "configs" / "cpu.yaml"))
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--small", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()

    settings = load_settings(args.config)
    model = str(prepare_model(settings).resolve())
    engine = settings.engine
    work = Path(args.out) / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "VLLM_ENABLE_V1_MULTIPROCESSING": "1" if engine.multiprocessing else "0",
        "VLLM_CPU_KVCACHE_SPACE": str(engine.cpu_kv_cache_gb),
    }
    runs: dict[str, dict[int, float]] = {"monolith batch": {}, "vllm run-batch": {}}
    tokens: dict[str, int] = {}
    for lines in (args.small, args.lines):
        source = work / f"in-{lines}.jsonl"
        write_requests(source, lines, args.max_tokens)
        for name in runs:
            output = work / f"out-{name.split()[0]}-{lines}.jsonl"
            output.unlink(missing_ok=True)
            if name == "monolith batch":
                command = [
                    sys.executable,
                    "-m",
                    "monolith.cli",
                    "--config",
                    args.config,
                    "batch",
                    str(source),
                    str(output),
                    "--max-in-flight",
                    str(engine.max_num_seqs * 4),
                ]
            else:
                command = [
                    sys.executable,
                    "-m",
                    "vllm.entrypoints.openai.run_batch",
                    "-i",
                    str(source),
                    "-o",
                    str(output),
                    "--model",
                    model,
                    "--served-model-name",
                    engine.served_model_name,
                    "--dtype",
                    engine.dtype,
                    "--max-model-len",
                    str(engine.max_model_len),
                    "--max-num-seqs",
                    str(engine.max_num_seqs),
                    "--seed",
                    str(engine.seed),
                ]
                command += ["--enforce-eager"] if engine.enforce_eager else []
            runs[name][lines] = timed(command, env, work / f"{name.split()[0]}-{lines}.log")
            tokens[f"{name}:{lines}"] = output_tokens(output)
            print(f"{name} {lines} lines: {runs[name][lines]:.1f} s wall", flush=True)

    rows = []
    for name, times in runs.items():
        extra_lines = args.lines - args.small
        extra_seconds = times[args.lines] - times[args.small]
        extra_tokens = tokens[f"{name}:{args.lines}"] - tokens[f"{name}:{args.small}"]
        rows.append(
            {
                "system": name,
                "wall_s": round(times[args.lines], 1),
                "lines_per_s": round(extra_lines / extra_seconds, 2),
                "output_tokens_per_s": round(extra_tokens / extra_seconds, 1),
            }
        )
    ratio = rows[0]["lines_per_s"] / rows[1]["lines_per_s"]
    result = {
        "lines": args.lines,
        "small": args.small,
        "max_tokens": args.max_tokens,
        "rows": rows,
        "monolith_over_vllm": round(ratio, 3),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out = Path(args.out)
    (out / "batch.json").write_text(json.dumps(result, indent=2) + "\n")
    table = ["| system | wall s (N lines, incl. load) | lines/s | output tokens/s |", "| --- | --- | --- | --- |"]
    table += [f"| {r['system']} | {r['wall_s']} | {r['lines_per_s']} | {r['output_tokens_per_s']} |" for r in rows]
    table.append(
        f"\nmonolith / vllm run-batch throughput: {ratio:.3f} ({args.lines} chat lines, "
        f"{args.max_tokens} output tokens each, rates from N={args.lines} minus n={args.small})"
    )
    (out / "batch.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
