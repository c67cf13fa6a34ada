"""A scripted engine behind the real app and a real uvicorn on loopback: deterministic timing for
admission, deadline and drain tests. The real engine goes through the same routes in tests/api."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import uvicorn

from monolith.api.app import create_app
from monolith.api.server import DrainingServer
from monolith.config import Settings
from monolith.engine import CallReader, Delta, EngineStats, Sampling
from monolith.generation import Generator
from monolith.runtime import Phase, Runtime, start_work
from monolith.scheduling import BackgroundBudget
from monolith.serving import Services
from monolith.store.database import open_database


class WordTokenizer:
    chat_template = None
    all_special_ids = [0]

    def __len__(self) -> int:
        return 1000

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(range(len(text.split())))

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return " ".join("w" for _ in ids)

    def apply_chat_template(self, messages: list[dict[str, str]], **kw: object) -> list[int]:
        return list(range(sum(len(m["content"].split()) + 2 for m in messages)))


@dataclass
class ScriptedEngine:
    """`capacity` generations at once (vLLM's max_num_seqs), the rest wait; a token every `gap_s`."""

    capacity: int = 2
    gap_s: float = 0.05
    max_model_len: int = 2048
    tokenizer: WordTokenizer = field(default_factory=WordTokenizer)
    stats: EngineStats = field(default_factory=EngineStats)
    started: int = 0
    aborted: int = 0
    finished: int = 0
    request_ids: list[str] = field(default_factory=list)  # in the order their generations came
    _slots: asyncio.Semaphore | None = None

    async def stream(self, prompt_ids: list[int], sampling: Sampling, request_id: str) -> AsyncIterator[Delta]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.capacity)
        self.started += 1
        self.request_ids.append(request_id)
        done = False
        try:
            async with self._slots:
                for i in range(1, sampling.max_tokens + 1):
                    await asyncio.sleep(self.gap_s)
                    finish = "length" if i == sampling.max_tokens else None
                    yield Delta(" w", i, len(prompt_ids), finish, token_ids=(i,))
            done = True
            self.finished += 1
        finally:
            if not done:
                self.aborted += 1

    sampling_defaults: dict[str, float] = field(default_factory=dict)
    dead: bool = False  # a test sets it: the engine core "died"

    def check(self, sampling: Sampling, param: str) -> None:
        pass  # the scripted engine takes any sampling

    def tool_call_reader(self, name: str) -> CallReader:
        from monolith.engine.vllm_tools import ToolCallReader  # vLLM's real parsers, over this engine's tokenizer

        return ToolCallReader(name, self.tokenizer)

    def is_dead(self) -> bool:
        return self.dead

    async def abort(self, request_id: str) -> None:
        pass

    async def aclose(self) -> None:
        pass


def scripted_loader(engine: ScriptedEngine, jobs: bool = False, retrieval: bool = False):
    """With `jobs`, the job store in data_dir and the async job and batch runners, as in a server; with
    `retrieval`, the real embedder, vector store and RAG pipeline, as in a server (else none)."""

    async def load(state: Runtime) -> None:
        generator = Generator(engine, state.settings, state.admission)
        if retrieval:
            services = await state.build_services(generator, await state.load_retrieval())
        else:
            services = Services(generator, rag=None)  # type: ignore[arg-type]
        if jobs:
            state.database = await open_database(state.settings.store.database, state.settings.data_dir)
            state.budget = BackgroundBudget(state.settings, state.admission)
            state.jobs, state.batches = start_work(services, state.database, state.budget)
        state.ready(services)

    return load


class ThreadedServer:
    """The app under DrainingServer in a thread; `signal()` does what SIGTERM's handler does."""

    def __init__(self, settings: Settings, engine: ScriptedEngine, port: int, jobs: bool = False) -> None:
        app = create_app(settings, loader=scripted_loader(engine, jobs))
        self.state: Runtime = app.state.runtime
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2)
        self.server = DrainingServer(config, self.state)
        self.base_url = f"http://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not (self.server.started and self.state.phase is Phase.READY):
            if time.monotonic() > deadline:
                raise RuntimeError("scripted server did not start")
            time.sleep(0.02)
        return self

    def signal(self) -> None:
        self.server.handle_exit(15, None)

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
