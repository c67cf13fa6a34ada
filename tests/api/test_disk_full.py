"""A full disk through HTTP on a server process (over the scripted engine: the disk is what is tested, not the
tokens): the files volume (an upload) and the job store's (a submit) each on a small tmpfs, filled by the test.
Each answers 507 and keeps nothing half-written; the server goes on, and once there is room again the same
requests succeed and the job runs."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import discard_server, start_server, wait_ready


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A volume of its own size (mounting needs root, as CI runs; elsewhere the test cannot make a full disk)."""
    if os.geteuid() != 0:
        pytest.skip("filling a disk safely needs a tmpfs of its own, and mounting one needs root")
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(volume: Path, leave_bytes: int) -> Path:
    """A file that takes all the room but `leave_bytes`."""
    stats = os.statvfs(volume)
    filler = volume / "filler"
    with filler.open("wb") as out:
        out.write(b"\0" * max(0, stats.f_bavail * stats.f_frsize - leave_bytes))
    return filler


def batch_file(lines: int) -> bytes:
    padding = "x" * 400
    rows = [
        {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "twin", "messages": [{"role": "user", "content": f"{i} {padding}"}], "max_tokens": 2}}
        for i in range(lines)
    ]  # fmt: skip
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def upload(base_url: str, content: bytes) -> httpx.Response:
    files = {"file": ("in.jsonl", content, "application/jsonl")}
    return httpx.post(f"{base_url}/v1/files", data={"purpose": "batch"}, files=files, timeout=60)


def submit(base_url: str) -> httpx.Response:
    body = {"model": "twin", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}
    return httpx.post(f"{base_url}/v1/async/chat/completions", json=body, timeout=60)


def test_a_full_disk_is_a_507_that_keeps_nothing_and_the_server_goes_on(tmp_path: Path, model_dir: Path) -> None:
    with tmpfs(tmp_path / "files", "2m") as files_dir, tmpfs(tmp_path / "db", "2m") as db_dir:
        env = {"MONOLITH_FILES__DIR": str(files_dir), "MONOLITH_STORE__DATABASE": str(db_dir / "jobs.sqlite3")}
        server = start_server(tmp_path / "replica", model_dir, env, scripted=True)
        try:
            wait_ready(server)
            content = batch_file(800)  # ~380 kB

            # The files volume: an upload that cannot fit.
            filler = fill(files_dir, 100_000)
            refused = upload(server.base_url, content)
            assert refused.status_code == 507, refused.text
            assert refused.json()["error"]["type"] == "storage_full" or "full" in refused.json()["error"]["message"]
            assert sorted(p.name for p in files_dir.iterdir()) == ["filler"], "a partial upload was left behind"
            assert httpx.get(f"{server.base_url}/health/ready").status_code == 200
            filler.unlink()
            stored = upload(server.base_url, content)
            assert stored.status_code == 200, stored.text
            assert stored.json()["bytes"] == len(content)

            # The job store's volume (SQLite in its own directory): a submit that cannot be written.
            filler = fill(db_dir, 4096)
            answers = [submit(server.base_url) for _ in range(20)]
            statuses = [a.status_code for a in answers]
            assert 507 in statuses and 500 not in statuses and 503 not in statuses, statuses
            full = answers[statuses.index(507)]
            assert full.headers.get("retry-after") and "disk is full" in full.json()["error"]["message"]
            filler.unlink()
            accepted = submit(server.base_url)
            assert accepted.status_code == 202, accepted.text
            deadline = time.monotonic() + 120
            while (job := httpx.get(f"{server.base_url}/v1/jobs/{accepted.json()['id']}").json())["status"] in (
                "queued",
                "running",
            ):
                assert time.monotonic() < deadline, job
                time.sleep(0.2)
            assert job["status"] == "succeeded", job
            assert server.proc.poll() is None
            log = server.log()
            assert log.count("the job store's disk is full") == 1 and "Traceback" not in log
        finally:
            discard_server(server)
