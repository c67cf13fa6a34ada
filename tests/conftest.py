"""Session-scoped real components: the prepared model, and a real server process on loopback."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from monolith.bench.otlp import OtlpReceiver
from monolith.bench.peers import free_port, kill_tree, launch, stop_process
from monolith.bench.postgres import PostgresServer
from monolith.config import Settings, load_settings
from monolith.model_prep import prepare_model
from tests import workers
from tests.helpers import SESSION_MARK, become_subreaper, reap
from tests.twins import make_twins

ROOT = Path(__file__).resolve().parents[1]
# Inherited by everything the session starts: pytest_sessionfinish kills whatever still carries it.
os.environ[SESSION_MARK] = uuid.uuid4().hex
become_subreaper()
workers.bind_engines_to_this_workers_core()
CPU_CONFIG = ROOT / "configs" / "cpu.yaml"
SAMPLE_CORPUS = ROOT / "corpus" / "sample.jsonl"
READY_TIMEOUT_S = 600
CALLBACK_SECRET = "whsec_dGVzdC1jYWxsYmFjay1zZWNyZXQ="


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The embedded default checkpoint, converted once into ./data like `make serve` does."""
    settings = load_settings(CPU_CONFIG).model_copy(update={"data_dir": ROOT / "data"})
    return prepare_model(settings).resolve()


@pytest.fixture(scope="session")
def twin_adapters(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two twins' LoRA adapters made by peft on the base model, once a session (tests/twins.py)."""
    return make_twins(model_dir, tmp_path_factory.mktemp("adapters"))


@pytest.fixture(scope="session")
def tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(CPU_CONFIG).model_copy(update={"data_dir": tmp_path})


class ServerProcess:
    def __init__(self, proc: subprocess.Popen, base_url: str, log_path: Path) -> None:
        self.proc = proc
        self.base_url = base_url
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


# What a server's first start embeds into an empty store; made once a session, copied into each new data dir.
_SEEDED_STORES: dict[str, Path] = {}
_RETRIEVAL_SETTINGS = ("MONOLITH_EMBEDDER__", "MONOLITH_INGEST__", "MONOLITH_QDRANT__")


def seeded_store() -> Path:
    """The sample corpus ingested by `monolith ingest` into a local Qdrant folder, once a session: a server
    whose data dir already holds it skips embedding it again at start (~2 s of both cores, per start)."""
    if "qdrant" not in _SEEDED_STORES:
        root = Path(tempfile.mkdtemp(prefix="monolith-seeded-"))
        atexit.register(shutil.rmtree, root, True)
        cmd = [sys.executable, "-m", "monolith.cli", "ingest", "--config", str(CPU_CONFIG), str(SAMPLE_CORPUS)]
        env = {**os.environ, "MONOLITH_DATA_DIR": str(root)}
        subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True, timeout=300)
        _SEEDED_STORES["qdrant"] = root / "qdrant"
    return _SEEDED_STORES["qdrant"]


def seed_store(data_dir: Path, env: dict[str, str]) -> None:
    """A new data dir gets the session's ingested store, unless the test chose its own retrieval settings (a
    corpus, an embedder, a Qdrant server): then the server ingests for itself, as on a first start."""
    if any(key.startswith(_RETRIEVAL_SETTINGS) for key in env) or (data_dir / "qdrant").exists():
        return
    shutil.copytree(seeded_store(), data_dir / "qdrant")


def start_server(
    data_dir: Path, model_dir: Path, env: dict[str, str] | None = None, *, seeded: bool = True, scripted: bool = False
) -> ServerProcess:
    """A real `monolith serve` on a free loopback port. `seeded`: its store starts with the sample corpus (the
    session's copy); False: it starts empty and ingests the corpus itself, as a first start does. `scripted`: the
    same server process and retrieval over the scripted engine (tests/scripted_server.py), for the tests that need
    a process but no real tokens."""
    if seeded:
        seed_store(data_dir, env or {})
    port = free_port()
    environment = {
        "MONOLITH_DATA_DIR": str(data_dir),
        "MONOLITH_ENGINE__MODEL": str(model_dir),
        "MONOLITH_ENGINE__MAX_TOKENS_LIMIT": "1024",
        "MONOLITH_INGEST__SAMPLE_CORPUS": str(SAMPLE_CORPUS),
        "MONOLITH_CALLBACKS__SECRET": CALLBACK_SECRET,
        "MONOLITH_CALLBACKS__ALLOW": '["localhost"]',  # the tests' receivers; no other loopback spelling
        "MONOLITH_FILES__MAX_LINES": "1000",
        # 1 GB of KV cache (23k tokens: more than any test holds at once) rather than 2: `make test`'s two workers
        # run up to four real servers at once in 24 GB.
        "MONOLITH_ENGINE__CPU_KV_CACHE_GB": "1",
        **(env or {}),
    }
    entry = ["tests.scripted_server"] if scripted else ["monolith.cli", "serve"]
    cmd = [sys.executable, "-m", *entry, "--config", str(CPU_CONFIG), "--port", str(port)]
    server = launch("server", cmd, environment, data_dir, port)  # its own process group, for kill_tree
    return ServerProcess(server.proc, server.base_url, server.log)


@dataclass
class Probe:
    """One look at a loading server: readiness status and phase, and whether liveness answered 200."""

    ready_status: int
    phase: str
    live: bool


def wait_ready(server: ServerProcess, timeout_s: float = READY_TIMEOUT_S, seen: list[Probe] | None = None) -> dict:
    """Polls readiness until 200; `seen` collects what readiness and liveness said on the way."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.log()[-4000:]}")
        try:
            response = httpx.get(f"{server.base_url}/health/ready", timeout=2)
            if seen is not None:
                live = httpx.get(f"{server.base_url}/health/live", timeout=2).status_code == 200
                seen.append(Probe(response.status_code, response.json().get("status", ""), live))
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server not ready after {timeout_s} s:\n{server.log()[-4000:]}")


class ManagedServer:
    """A dedicated server process for one test module (real, or over the scripted engine). A test that stops it
    (SIGTERM, SIGKILL) leaves it for the next test to start again, so the module's tests pass in any order."""

    def __init__(
        self, data_dir: Path, model_dir: Path, env: dict[str, str] | None = None, scripted: bool = False
    ) -> None:
        self.data_dir, self.model_dir, self.env, self.scripted = data_dir, model_dir, env, scripted
        self.server: ServerProcess | None = None
        self.probes: list[Probe] = []  # what the latest start looked like while it loaded

    def up(self) -> ServerProcess:
        if self.server is None or self.server.proc.poll() is not None:
            self.server = start_server(self.data_dir, self.model_dir, self.env, scripted=self.scripted)
            self.probes = []
            wait_ready(self.server, seen=self.probes)
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            discard_server(self.server)


def stop_server(server: ServerProcess) -> None:
    """SIGTERM, as Kubernetes stops a pod: the server drains and exits (what tests of the drain stop with)."""
    stop_process(server.proc)


def discard_server(server: ServerProcess) -> None:
    """The end of a fixture whose tests are done with it: its whole tree killed at once. A graceful stop waits
    ~3 s for the engine core's interpreter to tear down, for nothing a test looks at."""
    kill_tree(server.proc)


@contextmanager
def managed_server(
    data_dir: Path, model_dir: Path, env: dict[str, str] | None = None, scripted: bool = False
) -> Iterator[ManagedServer]:
    """The one way a test module gets a dedicated server process: `env` over the tests' defaults, started by the
    first test that calls `up()`, stopped however the module's tests end. `scripted`: over the scripted engine."""
    managed = ManagedServer(data_dir, model_dir, env, scripted)
    try:
        yield managed
    finally:
        managed.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[ServerProcess]:
    """One real `monolith serve` on loopback for the whole session: real engine, embedder, Qdrant."""
    srv = start_server(tmp_path_factory.mktemp("server"), model_dir, seeded=False)  # a first start, ingest included
    try:
        srv.ready = wait_ready(srv)  # type: ignore[attr-defined]
        yield srv
    finally:
        discard_server(srv)


@pytest.fixture(scope="session")
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A real OTLP/HTTP receiver on loopback for the session: the traced servers export their spans to it."""
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session; each test that needs one makes its own database."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=300) as client:
        yield client


# The fixtures that start a real engine (the session's server, the API tests' second one): their tests are slow.
_REAL_ENGINE_FIXTURES = {"server", "http", "openai_client", "small_server"}


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller of `make test`'s workers, or a run without them
        workers.name_units_file()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log) -> workers.UnitScheduling:
    return workers.UnitScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _REAL_ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    if hasattr(config, "workerinput"):  # an xdist worker (`make test`): its units, the longest first
        items[:] = workers.ordered(items)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """However the tests ended, no server, engine core, Prometheus or PostgreSQL outlives the session. Under
    xdist each worker reaps what it started; the controller started nothing (its children are the workers)."""
    if session.config.pluginmanager.has_plugin("dsession"):
        return
    leftovers = reap(os.environ[SESSION_MARK])
    if leftovers:
        listed = "\n".join(f"  {pid} {command[:120]}" for pid, command in leftovers)
        print(f"\nkilled {len(leftovers)} process(es) the tests left running:\n{listed}", file=sys.stderr)
