"""What the handlers share: the loaded services and the server's lifecycle phase."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from monolith.admission import ADMISSION, REALTIME
from monolith.api.auth import ApiKeys
from monolith.config import Settings
from monolith.errors import NotReady
from monolith.jobs.batches import BatchRunner
from monolith.jobs.worker import JobRunner
from monolith.metrics import READY
from monolith.serving import Services
from monolith.store.database import Database


class Phase(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"


@dataclass
class ServerState:
    settings: Settings
    keys: ApiKeys
    phase: Phase = Phase.LOADING
    detail: str = "loading the model"
    services: Services | None = None
    jobs: JobRunner | None = None
    batches: BatchRunner | None = None
    database: Database | None = None
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def draining(self) -> bool:
        return self.phase is Phase.DRAINING

    def begin_drain(self) -> None:
        """Readiness and new work turn 503; queued async jobs stay queued for the next start."""
        self.phase, self.detail = Phase.DRAINING, "draining: finishing in-flight requests"
        READY.set(0)
        if self.jobs is not None:
            self.jobs.pause()
        if self.batches is not None:
            self.batches.pause()

    def in_flight(self) -> int:
        """Real-time requests admitted and not finished, plus running async jobs."""
        return ADMISSION.in_flight(REALTIME) + (len(self.jobs.running) if self.jobs is not None else 0)

    def require_services(self) -> Services:
        if self.phase is Phase.READY and self.services is not None:
            return self.services
        if self.phase is Phase.DRAINING:
            raise NotReady("the server is shutting down; retry on another replica", retry_after=2)
        raise NotReady(f"the server is not ready: {self.detail}", retry_after=5)
