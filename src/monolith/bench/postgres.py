"""A real PostgreSQL server for the tests and `make soak`, from Debian's package (tools/get_postgres.sh puts it in
the venv).

PostgreSQL refuses to run as root, and CI runs as root: then the server runs as the `postgres` user (or
`nobody`) from a data directory that user owns. It listens on loopback with password authentication, the
way an operator's URL reaches a managed server.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from monolith.bench.peers import ROOT, free_port

PG_HOME = ROOT / ".venv" / "postgresql"
USER = "monolith"


def bin_dir() -> Path:
    """`make postgres` links it into the venv; else the newest server package installed."""
    candidates = [PG_HOME / "bin", *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]
    for candidate in candidates:
        if (candidate / "postgres").exists():
            return candidate
    raise FileNotFoundError("no PostgreSQL server: run `make postgres` (tools/get_postgres.sh)")


def run_as() -> pwd.struct_passwd | None:
    """The unprivileged account the server runs as when the tests run as root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root with no unprivileged account to run PostgreSQL as")


class PostgresServer:
    def __init__(self) -> None:
        self.password = secrets.token_urlsafe(12)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="monolith-pg-"))
        self.proc: subprocess.Popen | None = None

    def _as_user(self) -> dict:
        account = run_as()
        if account is None:
            return {}
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def _env(self) -> dict[str, str]:
        env = {**os.environ}
        library_path = PG_HOME / "library_path"  # set when the package was unpacked, not installed
        if library_path.exists():
            env["LD_LIBRARY_PATH"] = library_path.read_text().strip()
        return env

    def start(self, timeout_s: float = 60) -> PostgresServer:
        binaries = bin_dir()
        account = run_as()
        if account is not None:
            os.chown(self.dir, account.pw_uid, account.pw_gid)
        password_file = self.dir / "password"
        password_file.write_text(self.password)
        if account is not None:
            os.chown(password_file, account.pw_uid, account.pw_gid)
        data = self.dir / "data"
        subprocess.run(
            [binaries / "initdb", "-D", data, "-U", USER, "--pwfile", password_file, "-A", "scram-sha-256"],
            check=True,
            capture_output=True,
            cwd=self.dir,
            env=self._env(),
            timeout=120,
            **self._as_user(),
        )
        return self._launch(timeout_s)

    def _launch(self, timeout_s: float) -> PostgresServer:
        binaries, data = bin_dir(), self.dir / "data"
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.dir),
            "max_connections": "200",
            # Test speed: the tests kill monolith replicas, never this server.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        options = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        log = (self.dir / "postgres.log").open("ab")
        self.proc = subprocess.Popen(
            [binaries / "postgres", "-D", data, *options],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            env=self._env(),
            start_new_session=True,  # its own group: stop() takes its workers with it
            **self._as_user(),
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log()[-3000:]}")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def log(self) -> str:
        return (self.dir / "postgres.log").read_text(errors="replace")

    def url(self, database: str = "postgres") -> str:
        """As an operator writes it (no driver name): what `store.database` takes."""
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def halt(self) -> None:
        """An outage: the server shuts down ("fast": every connection is cut) and its data stays for resume()."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)

    def resume(self, timeout_s: float = 60) -> PostgresServer:
        """Back on the same address with the same data, as after a restart or a failover that keeps the address."""
        return self._launch(timeout_s)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
