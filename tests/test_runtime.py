"""The composition root without HTTP: the runners it starts are wired to the stores it opens."""

from __future__ import annotations

import asyncio
import gc
import io
import time

import pytest

from monolith import runtime as runtime_module
from monolith.admission import Admission
from monolith.config import Settings
from monolith.errors import NotReady
from monolith.generation import Generator
from monolith.runtime import Phase, Runtime, start_work
from monolith.scheduling import BackgroundBudget
from monolith.serving import Services
from monolith.store.database import open_database
from tests.scripted import ScriptedEngine


async def test_the_housekeeping_expires_files_past_their_ttl(settings: Settings) -> None:
    short = settings.model_copy(update={"files": settings.files.model_copy(update={"ttl_s": 0.5})})
    database = await open_database(short.store.database, short.data_dir)
    admission = Admission()
    services = Services(Generator(ScriptedEngine(), short, admission), rag=None)  # type: ignore[arg-type]
    jobs, batches = start_work(services, database, BackgroundBudget(short, admission))
    files = batches.store.files
    try:
        record = await files.add_file_from(io.BytesIO(b'{"a": 1}\n'), "in.jsonl", "batch", "", lambda n, b: None, 9, 99)
        assert jobs.housekeeping.expire_files is not None
        assert await jobs.housekeeping.expire_files() == 0, "a new file stays"
        await asyncio.sleep(1.6)  # created_at is in whole seconds
        assert await jobs.housekeeping.expire_files() == 1
        assert await files.get_file(record.id) is None and not files.path_of(record.id).exists()
    finally:
        await batches.stop()
        await jobs.stop()
        await database.close()


def test_a_runtime_not_loaded_or_draining_refuses_work_with_a_503_saying_why(settings: Settings) -> None:
    runtime = Runtime(settings)
    with pytest.raises(NotReady, match="not ready: loading the model") as loading:
        runtime.require_services()
    runtime.begin_drain()
    with pytest.raises(NotReady, match="shutting down") as draining:
        runtime.require_services()
    assert loading.value.status_code == draining.value.status_code == 503 and runtime.draining


async def test_vllm_is_imported_alone_before_the_engine_and_the_embedder_load_side_by_side(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both import transformers; from two threads at once a start-up failed on a half-imported module (see
    runtime.import_engine). The race itself cannot be forced, so the order is what is checked: the import is
    over before either load begins. The loads are stopped at their start: this is about the order only."""
    events: list[str] = []

    def importing(_: Settings) -> None:
        events.append("import started")
        time.sleep(0.3)  # a slow import: a load started beside it would show up inside it
        events.append("import done")

    async def engine(_: Settings, adapters: dict) -> None:
        events.append("engine load")
        raise RuntimeError("stopped here")

    def embedder(_: object) -> None:
        events.append("embedder load")
        raise RuntimeError("stopped here")

    monkeypatch.setattr(runtime_module, "prepare_model", lambda _: None)
    monkeypatch.setattr(runtime_module, "import_engine", importing)
    monkeypatch.setattr(runtime_module, "load_engine", engine)
    monkeypatch.setattr(runtime_module, "Embedder", embedder)
    runtime = Runtime(settings)
    await runtime.load(with_jobs=False)
    assert runtime.phase is Phase.FAILED
    assert events[:2] == ["import started", "import done"], events
    assert {"engine load", "embedder load"} <= set(events[2:]), events


async def test_the_start_up_heap_is_frozen_once_ready_and_let_go_at_close(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Full collections skip what start-up built (see runtime.freeze_startup_heap); close() gives it back."""
    monkeypatch.setattr(runtime_module, "prepare_model", lambda _: None)
    monkeypatch.setattr(runtime_module, "import_engine", lambda _: None)

    async def engine(_: Settings, adapters: dict) -> ScriptedEngine:
        return ScriptedEngine()

    monkeypatch.setattr(runtime_module, "load_engine", engine)
    runtime = Runtime(settings)
    try:
        assert gc.get_freeze_count() == 0
        await runtime.load(with_jobs=False, retrieval=False)
        assert runtime.phase is Phase.READY, runtime.detail
        assert gc.get_freeze_count() > 1000
    finally:
        await runtime.close()
    assert gc.get_freeze_count() == 0


async def test_a_twin_whose_adapter_cannot_be_read_stops_start_up_naming_it(
    settings: Settings,
    model_dir,
    twin_adapters,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before the engine loads: readiness never turns 200 on a half-loaded set of twins, and the log says which."""
    from monolith.config import TwinSettings

    twins = {"ada": TwinSettings(adapter=str(twin_adapters["ada"])), "ghost": TwinSettings(adapter="adapters/ghost")}
    engine = settings.engine.model_copy(update={"model": str(model_dir), "prepare_from": None})
    runtime = Runtime(settings.model_copy(update={"twins": twins, "engine": engine}))
    imported: list[Settings] = []
    monkeypatch.setattr(runtime_module, "import_engine", imported.append)
    await runtime.load()
    assert runtime.phase is Phase.FAILED and "checking the twins' adapters" in runtime.detail
    assert not imported, "the engine was not loaded for nothing"
    assert "twins.ghost: the adapter folder" in caplog.text and "does not exist" in caplog.text
