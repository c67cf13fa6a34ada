"""What the API tests share: the official `openai` client on the session's server, a shape to parse answers
into, and a second real server for the tests that need other settings than the session's (short generations
for the fuzzer, a tiny random-weight reranker, which /v1/rerank serves, and traces exported to a real OTLP
receiver)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI
from pydantic import BaseModel

from monolith.bench.otlp import OtlpReceiver
from tests.conftest import ManagedServer, ServerProcess, managed_server
from tests.helpers import save_tiny_cross_encoder

RERANK_MODEL = "tiny-reranker"
# Whether each test of LangChain's standard suite passed (tests/api/test_langchain_standard.py counts them).
STANDARD_SUITE = pytest.StashKey[dict[str, bool]]()


class Person(BaseModel):
    name: str
    age: int


@pytest.fixture(scope="session")
def openai_client(server: ServerProcess) -> Iterator[OpenAI]:
    client = OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=300)
    yield client
    client.close()


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
    return report
