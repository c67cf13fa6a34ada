"""Dependency providers: handlers receive typed objects, never an untyped app.state bag."""

from __future__ import annotations

from litestar import Request

from monolith.api.state import ServerState
from monolith.jobs.batches import BatchRunner
from monolith.jobs.worker import JobRunner
from monolith.serving import Services


def provide_state(request: Request) -> ServerState:
    return request.app.state.server


def provide_owner(request: Request) -> str:
    """The caller's key id (set by the auth middleware): what it makes is its own."""
    return request.state.owner


def provide_services(request: Request) -> Services:
    """Raises NotReady (503 + Retry-After) while loading, draining or after a failed start."""
    return provide_state(request).require_services()


def provide_jobs(request: Request) -> JobRunner:
    state = provide_state(request)
    state.require_services()
    assert state.jobs is not None
    return state.jobs


def provide_batches(request: Request) -> BatchRunner:
    state = provide_state(request)
    state.require_services()
    assert state.batches is not None
    return state.batches
