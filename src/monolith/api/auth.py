"""API keys: `Authorization: Bearer <key>`, as the openai client sends its `api_key`.

Keys come from `server.api_keys` (the environment) and `server.api_keys_file` (a mounted Secret, one key a
line), which is read again when it changes or on SIGHUP, so keys rotate without a restart. A caller is known
by its key's id (a hash prefix, never the key): jobs, files and batches belong to that id. With no keys
configured the server is open and every caller is the same anonymous owner.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import signal
import threading
import time
from pathlib import Path

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.types import Guard

from monolith.config import ServerSettings
from monolith.errors import Unauthorized

log = logging.getLogger(__name__)

ANONYMOUS = ""
# Routes that answer without a key: probes, and the scrape unless `server.protect_metrics`.
PROBES = ("/health/live", "/health/ready", "/ping")  # /ping: SageMaker's, which sends no credentials
FILE_CHECK_EVERY_S = 1.0


def key_id(key: str) -> str:
    """What the store keeps of a key: enough to tell owners apart, useless to call the server with."""
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:24]


class ApiKeys:
    def __init__(self, settings: ServerSettings) -> None:
        self._inline = [k.get_secret_value() for k in settings.api_keys]
        self._file = Path(settings.api_keys_file) if settings.api_keys_file else None
        self._file_stamp: tuple[int, int, int] | None = None
        self._checked_at = 0.0
        self._digests: dict[bytes, str] = {}
        self.reload()

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def reload(self) -> None:
        """Reads the keys again (SIGHUP, or the file changed). A missing or unreadable file keeps the old keys."""
        keys = list(self._inline)
        if self._file is not None:
            try:
                stat = self._file.stat()
                text = self._file.read_text()
            except OSError as exc:
                log.error("cannot read server.api_keys_file (%s); keeping the current keys", type(exc).__name__)
                return
            self._file_stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            keys += [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        digests = {hashlib.sha256(k.encode()).digest(): key_id(k) for k in keys}
        if self._digests and digests.keys() != self._digests.keys():
            log.info("API keys reloaded: %d key(s)", len(digests))
        self._digests = digests

    def _file_changed(self) -> bool:
        now = time.monotonic()
        if self._file is None or now - self._checked_at < FILE_CHECK_EVERY_S:
            return False
        self._checked_at = now
        try:
            stat = self._file.stat()  # a Kubernetes Secret update swaps a symlink: stat follows it
        except OSError:
            return False
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino) != self._file_stamp

    def owner_of(self, authorization: str | None) -> str | None:
        """The caller's key id, ANONYMOUS on an open server, None for a missing or wrong key."""
        if self._file_changed():
            self.reload()
        if not self._digests:
            return ANONYMOUS
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = hashlib.sha256(token.strip().encode()).digest()
        found = None
        for digest, owner in self._digests.items():  # every key compared, in constant time each
            if hmac.compare_digest(presented, digest):
                found = owner
        return found


def is_public(path: str, settings: ServerSettings) -> bool:
    if path in PROBES:
        return True
    if path == "/metrics":
        return not settings.protect_metrics
    if path == "/schema" or path.startswith("/schema/"):
        return not settings.protect_schema
    return False


def api_key_guard(keys: ApiKeys, settings: ServerSettings) -> Guard:
    """Litestar's guard (it runs before the body is read): a 401 from the one exception handler, like every other
    error, and the caller's key id on the connection for the handlers (`owner`). A handler with `opt={"public":
    True}` (the chat page's files) answers without a key."""

    def guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
        owner = keys.owner_of(connection.headers.get("authorization"))
        public = handler.opt.get("public", False) or is_public(connection.scope["path"], settings)
        if owner is None and not public:
            raise Unauthorized("a valid API key is required: send `Authorization: Bearer <key>`")
        connection.state.owner = owner or ANONYMOUS

    return guard


def warn_if_open(keys: ApiKeys, host: str) -> None:
    """One line at start-up when anyone who can reach the port can use every route."""
    if not keys.enabled and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "no API keys configured and listening on %s: anyone who can reach this port can read every job, file "
            "and batch (set MONOLITH_SERVER__API_KEYS or server.api_keys_file)",
            host,
        )


def sighup_reloads(keys: ApiKeys) -> None:
    """`kill -HUP <pid>` re-reads the keys at once (where the loop runs in the main thread: `monolith serve`;
    an app under a test client in another thread still re-reads a changed file)."""
    if threading.current_thread() is threading.main_thread():
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, keys.reload)
