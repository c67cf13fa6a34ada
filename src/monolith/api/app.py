"""create_app(settings): one Litestar app; services load in the background inside the lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin

from monolith import __version__
from monolith.admission import ADMISSION
from monolith.api.auth import ApiKeys, auth_middleware_factory, sighup_reloads
from monolith.api.batches import BatchesController
from monolith.api.errors import EXCEPTION_HANDLERS
from monolith.api.files import MULTIPART_OVERHEAD, FilesController
from monolith.api.health import HealthController
from monolith.api.jobs import JobsController
from monolith.api.loader import load_services
from monolith.api.middleware import metrics_middleware
from monolith.api.openai import OpenAIController
from monolith.api.openapi import TruthfulJsonSchema
from monolith.api.rag import RagController
from monolith.api.rerank import RerankController
from monolith.api.state import Phase, ServerState
from monolith.api.tokenize import TokenizeController
from monolith.config import Settings
from monolith.metrics import READY

log = logging.getLogger(__name__)

Loader = Callable[[ServerState], Awaitable[None]]


def files_controller(settings: Settings) -> type[FilesController]:
    """Uploads may be as large as batch.max_file_bytes, far above server.max_body_bytes; past it, a 413
    while the body arrives, not once it is on disk."""
    limit = settings.batch.max_file_bytes + MULTIPART_OVERHEAD
    return type("FilesController", (FilesController,), {"request_max_body_size": limit})


def create_app(settings: Settings, loader: Loader = load_services) -> Litestar:
    """`loader` fills `state.services`; tests pass a scripted one to make timing deterministic."""
    keys = ApiKeys(settings.server)
    state = ServerState(settings, keys)
    ADMISSION.configure(settings.admission.max_waiting, settings.admission.max_retry_after_s)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        READY.set(0)
        sighup_reloads(keys)
        loading = asyncio.create_task(loader(state))
        try:
            yield
        finally:
            state.phase, state.detail = Phase.DRAINING, "shutting down"
            READY.set(0)
            loading.cancel()
            if state.batches is not None:
                await state.batches.stop()
            if state.jobs is not None:
                await state.jobs.stop()
            if state.database is not None:
                await state.database.close()
            if state.services is not None:
                await state.services.aclose()

    cors = CORSConfig(allow_origins=settings.server.cors_origins) if settings.server.cors_origins else None
    return Litestar(
        state=State({"server": state}),
        route_handlers=[
            RagController,
            OpenAIController,
            TokenizeController,
            RerankController,
            JobsController,
            files_controller(settings),
            BatchesController,
            HealthController,
        ],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        # Outermost first: every answer, a 401 too, is counted and carries a request id.
        middleware=[metrics_middleware, auth_middleware_factory(keys, settings.server)],
        cors_config=cors,
        request_max_body_size=settings.server.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="monolith",
            version=__version__,
            description="LLM Twin inference server",
            render_plugins=[ScalarRenderPlugin(path="/"), TruthfulJsonSchema(settings)],
        ),
    )
