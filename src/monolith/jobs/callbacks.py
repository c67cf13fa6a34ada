"""Delivers finished jobs to their callback_url: signed the way Standard Webhooks does, retried with backoff,
persisted across restarts, and never to an address the destination policy refuses (checked again here:
DNS may have changed since the job was submitted)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping

import httpx

from monolith.config import CallbacksSettings
from monolith.errors import STORE_OUTAGES, BadRequest
from monolith.jobs.destinations import CallbackPolicy, IPAddress, Target, parse
from monolith.store.jobs import Job, JobStore

log = logging.getLogger(__name__)

# Standard Webhooks (https://www.standardwebhooks.com): the same message id on every retry of one callback,
# the time of this attempt, and "v1,<base64 HMAC-SHA256 of id.timestamp.body>".
ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = "webhook-id", "webhook-timestamp", "webhook-signature"
# 0.1.0's signature of the body alone (no replay protection), still sent for receivers written against it.
LEGACY_SIGNATURE_HEADER = "X-Monolith-Signature"
TOLERANCE_S = 300


def secret_key(secret: str) -> bytes:
    """A `whsec_<base64>` secret (what Standard Webhooks libraries take) is its decoded bytes; any other
    string its UTF-8 bytes."""
    return base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret_key(secret), signed, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> bool:
    """What a receiver checks: a v1 signature over id, timestamp and body, and a recent timestamp."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        message_id, timestamp = lowered[ID_HEADER], int(lowered[TIMESTAMP_HEADER])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_S:
        return False
    expected = sign(secret, message_id, timestamp, body)
    offered = lowered.get(SIGNATURE_HEADER, "").split()
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)


def legacy_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class CallbackSender:
    def __init__(self, store: JobStore, settings: CallbacksSettings, policy: CallbackPolicy | None = None) -> None:
        self.store = store
        self.settings = settings
        self.policy = policy or CallbackPolicy(settings.allow)
        # No redirects (a 3xx is a failed attempt): a redirect could lead anywhere the policy refuses.
        self._client = httpx.AsyncClient(timeout=settings.timeout_s, follow_redirects=False)

    async def close(self) -> None:
        await self._client.aclose()

    async def deliver_due(self, body_of: Callable[[Job], bytes]) -> int:
        """One pass over the due callbacks this replica could lease; `body_of(job)` renders the job as the
        API shows it. They go out side by side, each within callbacks.timeout_s, well inside the lease."""
        due = await self.store.claim_callbacks()
        results = await asyncio.gather(*(self._deliver(job, body_of) for job in due))
        return sum(results)

    async def _post(self, job: Job, body: bytes) -> str | None:
        """One attempt, within callbacks.timeout_s in all; None when the receiver answered 2xx, else why not."""
        target = parse(job.callback_url or "")
        async with asyncio.timeout(self.settings.timeout_s):
            addresses = await self.policy.resolve(target)
            for i, address in enumerate(addresses):  # the next address only when this one refuses to connect
                try:
                    return await self._post_to(target, address, job, body)
                except httpx.ConnectError:
                    if i == len(addresses) - 1:
                        raise
        return "no address"  # unreachable: resolve() returns at least one

    async def _post_to(self, target: Target, address: IPAddress, job: Job, body: bytes) -> str | None:
        host = f"[{address}]" if address.version == 6 else str(address)
        default_port = 443 if target.scheme == "https" else 80
        host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
        headers = {"Content-Type": "application/json", "Host": host_header, "X-Monolith-Job-Id": job.id}
        if job.traceparent:  # the receiver's work continues the trace the job was submitted in
            headers["traceparent"] = job.traceparent
        if self.settings.secret:
            timestamp = int(time.time())
            headers[ID_HEADER] = job.id
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign(self.settings.secret, job.id, timestamp, body)
            headers[LEGACY_SIGNATURE_HEADER] = legacy_signature(self.settings.secret, body)
        # To the address just checked (not a second lookup), with the name for the Host header and TLS.
        url = f"{target.scheme}://{host}:{target.port}{target.path}"
        request = self._client.build_request(
            "POST", url, content=body, headers=headers, extensions={"sni_hostname": target.host}
        )
        response = await self._client.send(request, stream=True)
        await response.aclose()  # the status is all we need: the body is never read
        return None if response.is_success else f"HTTP {response.status_code}"

    async def _deliver(self, job: Job, body_of: Callable[[Job], bytes]) -> bool:
        """Any failure at all, a refused address or a URL this release cannot parse included, is a failed
        attempt, recorded like any other: nothing a client wrote can stop the delivery loop."""
        try:
            reason = await self._post(job, body_of(job))
        except BadRequest as exc:
            reason = exc.message
        except TimeoutError:
            reason = "timed out"
        except Exception as exc:
            reason = type(exc).__name__
        ok = reason is None
        attempts = job.callback_attempts + 1
        give_up = not ok and attempts >= self.settings.max_attempts
        retry_in_s = None if ok or give_up else self.settings.backoff_s * 2 ** (attempts - 1)
        await self.store.callback_result(job.id, ok, retry_in_s, give_up)
        if not ok:
            log.warning(
                "callback for %s failed (%s), attempt %d%s", job.id, reason, attempts, ", giving up" if give_up else ""
            )
        return ok


class CallbackLoop:
    """Sends the callbacks that are due: at once when a job here finishes (`due`), else every poll_interval_s (the
    retries, and jobs that finished on other replicas)."""

    def __init__(self, sender: CallbackSender, body_of: Callable[[Job], bytes], poll_interval_s: float) -> None:
        self.sender = sender
        self.body_of = body_of
        self.poll_interval_s = poll_interval_s
        self._due = asyncio.Event()

    def due(self) -> None:
        self._due.set()

    async def run(self) -> None:
        while True:
            try:
                await self.sender.deliver_due(self.body_of)
            except STORE_OUTAGES:  # said once by the store's health; wait longer each time until it is back
                await asyncio.sleep(self.sender.store.db.health.backoff_s())
            except Exception:
                log.exception("callback delivery failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), self.poll_interval_s)
            self._due.clear()
