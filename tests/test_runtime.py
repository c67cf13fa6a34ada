"""The composition root without HTTP: the runners it starts are wired to the stores it opens."""

from __future__ import annotations

import asyncio
import io

import pytest

from monolith.config import Settings
from monolith.errors import NotReady
from monolith.generation import Generator
from monolith.runtime import Runtime, start_work
from monolith.serving import Services
from monolith.store.database import open_database
from tests.scripted import ScriptedEngine


async def test_the_housekeeping_expires_files_past_their_ttl(settings: Settings) -> None:
    short = settings.model_copy(update={"batch": settings.batch.model_copy(update={"file_ttl_s": 0.5})})
    database = await open_database(short.jobs.database, short.data_dir)
    jobs, batches = start_work(Services(Generator(ScriptedEngine(), short), rag=None), database)  # type: ignore[arg-type]
    files = batches.store.files
    try:
        record = await files.add_file_from(io.BytesIO(b'{"a": 1}\n'), "in.jsonl", "batch", "", lambda n, b: None, 9, 99)
        assert jobs.expire_files is not None
        assert await jobs.expire_files() == 0, "a new file stays"
        await asyncio.sleep(1.6)  # created_at is in whole seconds
        assert await jobs.expire_files() == 1
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
