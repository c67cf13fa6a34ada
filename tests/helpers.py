"""Small real servers the tests talk to, and running commands so that nothing outlives the test."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# Every process the test session starts inherits this variable (children and grandchildren alike, in
# whatever process group), which is how the session finds what a failed test left behind.
SESSION_MARK = "MONOLITH_TEST_SESSION"


def run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run(..., capture_output=True, text=True) in a process group of its own: on a timeout, or any
    other way out, the whole group goes (a monolith's engine core; a benchmark's servers get SIGTERM first
    so that they stop their own children)."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        stop_group(proc)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def stop_group(proc: subprocess.Popen, grace_s: float = 20) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.communicate(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


def session_processes(mark: str) -> list[tuple[int, str]]:
    """(pid, command) of every process but this one whose environment carries `mark`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            if f"{SESSION_MARK}={mark}".encode() in environ:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append((int(entry.name), command.strip()))
        except OSError:  # gone meanwhile, or a kernel thread
            continue
    return found


def reap(mark: str) -> list[tuple[int, str]]:
    """SIGKILLs what the session left running; returns what it found."""
    found = session_processes(mark)
    for pid, _ in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return found


class Receiver:
    """A real HTTP server that records callbacks; fails the first `fail_first` requests with 500."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived: list[float] = []  # time.monotonic() of each request, in order
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.arrived.append(time.monotonic())
                receiver.received.append((dict(self.headers), body))
                status = 500 if len(receiver.received) <= receiver.fail_first else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
