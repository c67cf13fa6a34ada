"""What a generation needs to know about the work it serves, as one value handed down from the entry point (a
real-time controller, the async job worker, a batch line, the file transform) through serving and the `Generator`
into the engine call: its lane, its admission ticket(s) and the background slot it holds. Whatever else must travel
from a request to its engine calls the same way is a field here, never a global. What is generated (the prompt,
the sampling, a twin's adapter) is the plan's, on `Sampling`: a resumed generation keeps it with the rest."""

from __future__ import annotations

from dataclasses import dataclass, replace

from monolith.admission import REALTIME, Ticket
from monolith.scheduling import Hold


@dataclass(frozen=True)
class Work:
    lane: str = REALTIME
    # The request's ticket, or one per prompt of a completions request (each waits as a request of its own).
    # Empty: each generation is admitted on its own, in `lane` (a batch line, the warm-up).
    tickets: tuple[Ticket, ...] = ()
    # The background slot an async job or a batch line holds: its generation can pause and resume from its own
    # tokens when real-time traffic preempts it (monolith.resume). None for real-time requests.
    hold: Hold | None = None

    @property
    def ticket(self) -> Ticket | None:
        return self.tickets[0] if self.tickets else None

    @property
    def overdue(self) -> bool:
        """Background work that waited past scheduling.max_background_wait_s: served like real-time. Read at each
        engine call: a generation that resumes after a pause may have become overdue meanwhile."""
        return self.hold is not None and self.hold.overdue

    def prompt(self, index: int) -> Work:
        """The work of a request's `index`-th prompt: its own ticket where each prompt has one, else the request's."""
        if len(self.tickets) > 1:
            return replace(self, tickets=(self.tickets[index],))
        return self
