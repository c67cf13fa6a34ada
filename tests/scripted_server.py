"""`monolith serve` over the scripted engine (tests/scripted.py), as a process of its own: the real app, uvicorn,
signal handlers (SIGTERM's drain, SIGHUP's key reload), log, job store, runners and the real embedder, vector store
and RAG pipeline, with no vLLM to load.
For the tests that need a server process but no real tokens (API keys and ownership, a full disk, a vector store
that fails): it is ready in a few seconds where a real one takes ~20 (two imports of vLLM, one in the engine core's
process). Started by tests.conftest.start_server(scripted=True).

    python -m tests.scripted_server --config configs/cpu.yaml --port 8000"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from monolith import logs
from monolith.cli import run_server, start_logging
from monolith.config import load_settings
from tests.scripted import ScriptedEngine, scripted_loader


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=logs.TEXT_FORMAT)
    settings = load_settings(args.config)  # and the MONOLITH_* environment, as `monolith serve` reads them
    start_logging(settings)
    engine = ScriptedEngine(capacity=settings.engine.max_num_seqs)  # a token every 50 ms
    loader = scripted_loader(engine, jobs=True, retrieval=True)
    run_server(settings, "127.0.0.1", args.port, loader)  # and exits the process


if __name__ == "__main__":
    main()
