"""create_app(settings): one Litestar app around one Runtime, whose services load in the background inside the
lifespan (liveness answers meanwhile)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.logging.config import LoggingConfig

from monolith.api.auth import ApiKeys, sighup_reloads
from monolith.api.plugin import MonolithPlugin
from monolith.config import Settings
from monolith.logs import litestar_formatters
from monolith.metrics import READY
from monolith.runtime import Loader, Runtime


async def load_all(runtime: Runtime) -> None:
    await runtime.load()


def create_app(settings: Settings, loader: Loader = load_all) -> Litestar:
    """`loader` brings the runtime up; tests pass a scripted one to make timing deterministic."""
    runtime = Runtime(settings)
    keys = ApiKeys(settings.server)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        READY.set(0)
        sighup_reloads(keys)
        loading = asyncio.create_task(loader(runtime))
        try:
            yield
        finally:
            loading.cancel()
            await runtime.close()

    # The body limit is the constructor's: Litestar 2 reads it from its argument, not from what a plugin's
    # on_app_init sets (a limit set there is silently the 10 MB default).
    formatters = litestar_formatters(settings.server.log_format)
    return Litestar(
        lifespan=[lifespan],
        plugins=[MonolithPlugin(runtime, keys)],
        request_max_body_size=settings.server.max_body_bytes,
        **({"logging_config": LoggingConfig(formatters=formatters)} if formatters else {}),
    )
