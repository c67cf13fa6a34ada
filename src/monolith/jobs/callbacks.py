"""Delivers finished jobs to their callback_url: signed, retried with backoff, persisted across restarts."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Callable

import httpx

from monolith.config import JobsSettings
from monolith.store.jobs import Job, JobStore

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

    async def deliver_due(self, body_of: Callable[[Job], bytes]) -> int:
        """One pass over the due callbacks this replica could lease; `body_of(job)` renders the job as the
        API shows it. They go out side by side, each within callback_timeout_s, well inside the lease."""
        due = await self.store.claim_callbacks()
        results = await asyncio.gather(*(self._deliver(job, body_of(job)) for job in due))
        return sum(results)

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
        retry_in_s = None if ok or give_up else self.settings.callback_backoff_s * 2 ** (attempts - 1)
        await self.store.callback_result(job.id, ok, retry_in_s, give_up)
        if not ok:
            log.warning(
                "callback for %s failed (%s), attempt %d%s", job.id, reason, attempts, ", giving up" if give_up else ""
            )
        return ok
