"""Delivers finished jobs to their callback_url: signed, retried with backoff, persisted across restarts."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

import httpx

from monolith.config import JobsSettings
from monolith.jobs.store import Job, JobStore

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Monolith-Signature"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, body), signature)


class CallbackSender:
    def __init__(self, store: JobStore, settings: JobsSettings) -> None:
        self.store = store
        self.settings = settings
        self._client = httpx.AsyncClient(timeout=settings.callback_timeout_s)

    async def close(self) -> None:
        await self._client.aclose()

    async def deliver_due(self, body_of) -> int:
        """One pass over due callbacks; `body_of(job)` renders the job as the API shows it."""
        delivered = 0
        for job in self.store.due_callbacks(time.time()):
            delivered += await self._deliver(job, body_of(job))
        return delivered

    async def _deliver(self, job: Job, body: bytes) -> bool:
        headers = {"Content-Type": "application/json", "X-Monolith-Job-Id": job.id}
        if self.settings.callback_secret:
            headers[SIGNATURE_HEADER] = sign(self.settings.callback_secret, body)
        ok = False
        try:
            response = await self._client.post(job.callback_url or "", content=body, headers=headers)
            ok = response.is_success
            reason = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
        attempts = job.callback_attempts + 1
        give_up = not ok and attempts >= self.settings.callback_max_attempts
        next_at = None if ok or give_up else time.time() + self.settings.callback_backoff_s * 2 ** (attempts - 1)
        self.store.callback_result(job.id, ok, next_at, give_up)
        if not ok:
            log.warning(
                "callback for %s failed (%s), attempt %d%s", job.id, reason, attempts, ", giving up" if give_up else ""
            )
        return ok
