"""What the API tests share: the official `openai` client on the session's server, a shape to parse answers
into, and a second real server for the tests that need other settings than the session's (short generations
for the fuzzer, a tiny random-weight reranker, which /v1/rerank serves, and traces exported to a real OTLP
receiver)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from pydantic import BaseModel

from monolith.bench.otlp import OtlpReceiver
from monolith.config import load_settings
from tests.conftest import CPU_CONFIG, ManagedServer, ServerProcess, free_port, managed_server
from tests.helpers import save_tiny_cross_encoder
from tests.scripted import ScriptedEngine, ThreadedServer

RERANK_MODEL = "tiny-reranker"
# Whether each test of LangChain's standard suite passed (tests/api/test_langchain_standard.py counts them), and
# how each failed one failed (its exception's message, which names what the model wrote).
STANDARD_SUITE = pytest.StashKey[dict[str, bool]]()
STANDARD_SUITE_ERRORS = pytest.StashKey[dict[str, str]]()


class Person(BaseModel):
    name: str
    age: int


@pytest.fixture(scope="session")
def openai_client(server: ServerProcess) -> Iterator[OpenAI]:
    client = OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=300)
    yield client
    client.close()


@pytest.fixture(scope="session")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The real app with the session server's bounds (engine.max_tokens_limit, files.max_lines, the context window)
    over a scripted engine, with its job store: for the bad-input tests, which need no real tokens, so that
    `make test-quick` runs them."""
    settings = load_settings(CPU_CONFIG)
    bounded = settings.model_copy(
        update={
            "data_dir": tmp_path_factory.mktemp("scripted"),
            "engine": settings.engine.model_copy(update={"max_tokens_limit": 1024}),
            "files": settings.files.model_copy(update={"max_lines": 1000}),
        }
    )
    with (
        ThreadedServer(bounded, ScriptedEngine(gap_s=0.001), free_port(), jobs=True) as running,
        httpx.Client(base_url=running.base_url, timeout=30) as client,
    ):
        yield client


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-cross-encoder"))


@pytest.fixture(scope="session")
def small_server(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, tiny_cross_encoder: Path, otlp_receiver: OtlpReceiver
) -> Iterator[ManagedServer]:
    env = {
        # Traced, to a real OTLP receiver, its log lines JSON (tests/api/test_tracing.py): the fuzzer's hostile
        # requests go through the tracing middleware too.
        **otlp_receiver.env(),
        "MONOLITH_SERVER__LOG_FORMAT": "json",
        # Short generations: a fuzzer asks for max_tokens up to the limit on every operation (the served schema
        # says the limit), and its ~600 answered requests keep the engine busy for most of its run.
        "MONOLITH_ENGINE__MAX_TOKENS_LIMIT": "4",
        "MONOLITH_ENGINE__DEFAULT_MAX_TOKENS": "4",
        "MONOLITH_SERVER__REQUEST_TIMEOUT_S": "20",
        "MONOLITH_RAG__EXPAND": "false",
        "MONOLITH_ADMISSION__MAX_WAITING": "64",
        "MONOLITH_JOBS__MAX_UNFINISHED_PER_OWNER": "50",
        "MONOLITH_RERANK__MODEL": str(tiny_cross_encoder),
        "MONOLITH_RERANK__SERVED_MODEL_NAME": RERANK_MODEL,
    }
    with managed_server(tmp_path_factory.mktemp("small"), model_dir, env) as managed:
        yield managed


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    """Records each standard-suite test's outcome (an xfail that passed counts as passed)."""
    report = yield
    own_skip = report.skipped and not hasattr(report, "wasxfail")  # PDF, audio, images: the suite's own skips
    if report.when == "call" and "test_langchain_standard" in item.nodeid and not own_skip:
        item.config.stash.setdefault(STANDARD_SUITE, {})[item.nodeid] = report.passed
        if not report.passed:  # the exception's own message (a parser's names the completion), else the traceback
            crash = getattr(report.longrepr, "reprcrash", None)
            error = crash.message if crash is not None else str(report.longrepr)
            item.config.stash.setdefault(STANDARD_SUITE_ERRORS, {})[item.nodeid] = error[:1500]
    return report
