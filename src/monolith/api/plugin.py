"""The whole HTTP edge wired in one place (litestar-fullstack's way): controllers, the dependencies every
handler may name, the exception handlers, authentication, request metrics, body limits, the OpenAPI schema."""

from __future__ import annotations

from litestar.config.app import AppConfig
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.plugins import InitPluginProtocol

from monolith import __version__, tracing
from monolith.api.auth import ApiKeys, api_key_guard
from monolith.api.batches import BatchesController
from monolith.api.deps import DEPENDENCIES
from monolith.api.errors import EXCEPTION_HANDLERS
from monolith.api.files import MULTIPART_OVERHEAD, FilesController
from monolith.api.health import HealthController
from monolith.api.jobs import JobsController
from monolith.api.middleware import metrics_middleware, tracing_middleware
from monolith.api.openai import OpenAIController
from monolith.api.openapi import TruthfulJsonSchema
from monolith.api.rag import RagController
from monolith.api.rerank import RerankController
from monolith.api.sagemaker import SageMakerController, payload_limit
from monolith.api.strict_body import check_body
from monolith.api.tgi import TgiController
from monolith.api.tokenize import TokenizeController
from monolith.api.webui import load_assets, web_ui_handlers
from monolith.config import Settings
from monolith.runtime import Runtime


def sagemaker_controller(settings: Settings) -> type[SageMakerController]:
    """/invocations takes SageMaker's real-time payloads (6 MB) even where server.max_body_bytes is smaller."""
    limit = payload_limit(settings)
    return type("SageMakerController", (SageMakerController,), {"request_max_body_size": limit})


def files_controller(settings: Settings) -> type[FilesController]:
    """Uploads may be as large as files.max_bytes, far above server.max_body_bytes; past it, a 413
    while the body arrives, not once it is on disk."""
    limit = settings.files.max_bytes + MULTIPART_OVERHEAD
    return type("FilesController", (FilesController,), {"request_max_body_size": limit})


class MonolithPlugin(InitPluginProtocol):
    def __init__(self, runtime: Runtime, keys: ApiKeys) -> None:
        self.runtime = runtime
        self.keys = keys

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        settings = self.runtime.settings
        assets = load_assets() if settings.server.web_ui else {}
        app_config.state = State({"runtime": self.runtime, "api_keys": self.keys, "web_assets": assets})
        app_config.route_handlers.extend(
            [
                RagController,
                OpenAIController,
                TokenizeController,
                RerankController,
                JobsController,
                files_controller(settings),
                BatchesController,
                HealthController,
                TgiController,
                sagemaker_controller(settings),
                *web_ui_handlers(settings),  # after the controllers: see web_ui_handlers
            ]
        )
        app_config.dependencies.update(DEPENDENCIES)
        app_config.exception_handlers.update(EXCEPTION_HANDLERS)  # type: ignore[arg-type]
        app_config.guards.append(api_key_guard(self.keys, settings.server))
        app_config.before_request = check_body  # every JSON body as strictly as its schema says
        # Every answer, a 401 too, is counted and carries a request id.
        app_config.middleware.insert(0, metrics_middleware)
        if tracing.enabled():  # outermost: its span covers the whole request, the 401s and 404s too
            app_config.middleware.insert(0, tracing_middleware)
        if settings.server.cors_origins:
            app_config.cors_config = CORSConfig(allow_origins=settings.server.cors_origins)
        app_config.openapi_config = OpenAPIConfig(
            title="monolith",
            version=__version__,
            description="LLM Twin inference server",
            render_plugins=[ScalarRenderPlugin(path="/"), TruthfulJsonSchema(settings)],
        )
        return app_config
