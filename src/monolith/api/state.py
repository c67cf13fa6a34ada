"""What the handlers share: the loaded services and the server's lifecycle phase."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from monolith.config import Settings
from monolith.errors import NotReady
from monolith.jobs.batches import BatchRunner
from monolith.jobs.worker import JobRunner
from monolith.serving import Services


class Phase(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"


@dataclass
class ServerState:
    settings: Settings
    phase: Phase = Phase.LOADING
    detail: str = "loading the model"
    services: Services | None = None
    jobs: JobRunner | None = None
    batches: BatchRunner | None = None
    timings_s: dict[str, float] = field(default_factory=dict)

    def require_services(self) -> Services:
        if self.phase is Phase.READY and self.services is not None:
            return self.services
        if self.phase is Phase.DRAINING:
            raise NotReady("the server is shutting down", retry_after=1)
        raise NotReady(f"the server is not ready: {self.detail}", retry_after=5)
