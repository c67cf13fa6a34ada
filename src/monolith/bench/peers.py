"""The servers a benchmark compares, each a real process on loopback with the same checkpoint."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from monolith.config import Settings

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    base_url: str
    log: Path
    launched: float = field(default_factory=time.monotonic)

    def wait_ready(self, path: str, timeout_s: float = 900) -> float:
        """Seconds from launch to the first 200 on `path`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(self.base_url + path, timeout=2).status_code == 200:
                    return time.monotonic() - self.launched
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready after {timeout_s} s")

    def stop(self) -> int:
        return stop_process(self.proc)


def stop_process(proc: subprocess.Popen, timeout_s: float = 60) -> int:
    """SIGTERM (a monolith drains, then exits 0), its whole tree killed if it outlives the timeout; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
    return proc.wait()


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL to the process group `launch` gave the server: a killed server's vLLM engine core is its
    child and would otherwise live on as an orphan holding the model and KV cache (3.4 GB here)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def launch(name: str, cmd: list[str], env: dict[str, str], workdir: Path, port: int) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(name, proc, f"http://127.0.0.1:{port}", log)


def service_env(data_dir: Path, model_dir: Path) -> dict[str, str]:
    """Its own data dir (local Qdrant, jobs DB), the shared checkpoint; nothing refused by admission; job
    callbacks to loopback allowed."""
    return {
        "MONOLITH_DATA_DIR": str(data_dir),
        "MONOLITH_ENGINE__MODEL": str(model_dir),
        "MONOLITH_INGEST__SAMPLE_CORPUS": str(ROOT / "corpus" / "sample.jsonl"),
        "MONOLITH_ADMISSION__MAX_WAITING": "100000",
        "MONOLITH_CALLBACKS__ALLOW": '["127.0.0.1"]',  # the bench's receiver of job callbacks (mixed.py)
    }


def start_monolith(config: Path, settings: Settings, model_dir: Path, workdir: Path, env: dict | None = None) -> Server:
    port = free_port()
    environment = {**service_env(workdir / "monolith-data", model_dir), **(env or {})}
    cmd = [sys.executable, "-m", "monolith.cli", "serve", "--config", str(config), "--port", str(port)]
    return launch("monolith", cmd, environment, workdir, port)


def vllm_engine_args(settings: Settings, model_dir: Path) -> list[str]:
    """The monolith's engine settings as vLLM's own CLI flags, so both sides run the same engine."""
    cfg = settings.engine
    args = ["--model", str(model_dir), "--served-model-name", cfg.served_model_name, "--dtype", cfg.dtype]
    args += ["--max-model-len", str(cfg.max_model_len), "--max-num-seqs", str(cfg.max_num_seqs)]
    args += ["--seed", str(cfg.seed), "--gpu-memory-utilization", str(cfg.gpu_memory_utilization)]
    args += ["--tensor-parallel-size", str(cfg.tensor_parallel_size)]
    if cfg.compact_json:  # engine.compact_json, as vLLM's own flags say it
        args += ["--structured-outputs-config.backend", "xgrammar"]
        args += ["--structured-outputs-config.disable_any_whitespace", "true"]
    if cfg.max_num_batched_tokens:
        args += ["--max-num-batched-tokens", str(cfg.max_num_batched_tokens)]
    if cfg.block_size:
        args += ["--block-size", str(cfg.block_size)]
    return args + (["--enforce-eager"] if cfg.enforce_eager else [])


def vllm_env(settings: Settings) -> dict[str, str]:
    cfg = settings.engine
    return {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "1" if cfg.multiprocessing else "0",
        "VLLM_CPU_KVCACHE_SPACE": str(cfg.cpu_kv_cache_gb),
    }


def start_vllm(settings: Settings, model_dir: Path, workdir: Path) -> Server:
    """`vllm serve` as the same package runs it (its `vllm` console script fails in vllm-cpu), same engine args."""
    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", *vllm_engine_args(settings, model_dir)]
    # vLLM refuses tool_choice "required" unless a tool-call parser is on (it is only loaded with auto tool
    # choice), though it constrains and reads a required answer with its own JSON schema; "pythonic" loads on
    # any tokenizer, and the bench never sends "auto".
    cmd += ["--enable-auto-tool-choice", "--tool-call-parser", "pythonic"]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    return launch("vllm", cmd, vllm_env(settings), workdir, port)


def start_split(config: Path, model_dir: Path, workdir: Path, llm_url: str) -> Server:
    """The business service of the microservice split; its own data dir and Qdrant, the LLM over HTTP."""
    port = free_port()
    env = service_env(workdir / "split-data", model_dir)
    cmd = [sys.executable, "-m", "monolith.bench.split", "--config", str(config), "--llm-url", llm_url]
    return launch("split", [*cmd, "--port", str(port)], env, workdir, port)
