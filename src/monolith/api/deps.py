"""Dependency providers, declared once for the whole app (api.plugin): handlers receive typed objects, never an
untyped app.state bag."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import Provide

from monolith.config import Settings
from monolith.jobs.batches import BatchRunner
from monolith.jobs.worker import JobRunner
from monolith.runtime import Runtime
from monolith.serving.services import Services
from monolith.store.files import FileStore


def provide_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def provide_settings(request: Request) -> Settings:
    return provide_runtime(request).settings


def provide_owner(request: Request) -> str:
    """The caller's key id (set by the API-key guard, api.auth): what it makes is its own."""
    return request.state.owner


def provide_services(request: Request) -> Services:
    """Raises NotReady (503 + Retry-After) while loading, draining or after a failed start."""
    return provide_runtime(request).require_services()


def provide_jobs(request: Request) -> JobRunner:
    runtime = provide_runtime(request)
    runtime.require_services()
    assert runtime.jobs is not None
    return runtime.jobs


def provide_batches(request: Request) -> BatchRunner:
    runtime = provide_runtime(request)
    runtime.require_services()
    assert runtime.batches is not None
    return runtime.batches


def provide_files(request: Request) -> FileStore:
    return provide_batches(request).store.files


# Resolved only by the handlers that name them; each is cheap and synchronous.
DEPENDENCIES: dict[str, Any] = {
    name: Provide(provider, sync_to_thread=False)
    for name, provider in {
        "runtime": provide_runtime,
        "settings": provide_settings,
        "owner": provide_owner,
        "services": provide_services,
        "runner": provide_jobs,
        "batches": provide_batches,
        "files": provide_files,
    }.items()
}
