"""uvicorn, with a drain: the first SIGTERM stops admission but keeps the listener open.

Plain uvicorn closes its socket at once and re-raises the signal when done (exit 143). Here the
process keeps answering (readiness 503, new work 503 + Retry-After) while in-flight requests finish,
for at most `shutdown.drain_s`, then shuts down and exits 0. A second signal stops it at once.
When the engine dies the process exits 3 within seconds instead, so that it is restarted.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from types import FrameType

import uvicorn
from litestar import Litestar

from monolith.api.auth import warn_if_open
from monolith.logs import uvicorn_log_config
from monolith.runtime import Runtime

log = logging.getLogger(__name__)

# Once drained, connections still open (idle keep-alives, a last response being written) get this long.
CLOSE_GRACE_S = 5
# The engine died (Runtime.stop_for_good): in-flight requests get this long to send their 503, then the server
# shuts down and the process exits with FATAL_EXIT_CODE; if that shutdown hangs, the process ends itself anyway.
FATAL_GRACE_S = 2.0
FATAL_EXIT_CODE = 3
FATAL_DEADLINE_S = 30.0


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: Runtime) -> None:
        super().__init__(config)
        self.state = state
        self.drain_s = state.settings.shutdown.drain_s
        self.signalled_at: float | None = None
        self.fatal_at: float | None = None
        state.on_fatal = self.exit_for_restart

    def exit_for_restart(self) -> None:
        self.fatal_at = time.monotonic()
        # A daemon timer, not a task: it fires even if the event loop is stuck in the shutdown.
        deadline = threading.Timer(FATAL_DEADLINE_S, os._exit, args=(FATAL_EXIT_CODE,))
        deadline.daemon = True
        deadline.start()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.signalled_at is None:
            self.signalled_at = time.monotonic()  # a signal handler: the next tick starts the drain
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.fatal_at is not None and time.monotonic() - self.fatal_at >= FATAL_GRACE_S:
            self.should_exit = True
        if self.signalled_at is not None and not self.should_exit:
            if not self.state.draining:
                self.state.begin_drain()
                log.info("draining: %d request(s) in flight, up to %.0f s", self.state.in_flight(), self.drain_s)
            waited = time.monotonic() - self.signalled_at
            left = self.state.in_flight()
            if left == 0 or waited >= self.drain_s:
                log.info("drain finished after %.1f s with %d request(s) still in flight", waited, left)
                self.should_exit = True
        return await super().on_tick(counter)


def serve(app: Litestar, host: str, port: int) -> None:
    runtime: Runtime = app.state.runtime
    settings = runtime.settings
    warn_if_open(app.state.api_keys, host)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.server.log_level,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=CLOSE_GRACE_S,
        log_config=uvicorn_log_config(settings.server.log_format),
    )
    DrainingServer(config, runtime).run()
    if runtime.fatal is not None:
        log.error("exiting with status %d: %s", FATAL_EXIT_CODE, runtime.fatal)
        raise SystemExit(FATAL_EXIT_CODE)
