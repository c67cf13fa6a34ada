"""Every `bash` and `python` example in the README and the documentation site runs against a real server, so a
renamed field or route breaks a test, not a newcomer. A block fenced as `console` (installing, serving,
deploying), `yaml` or `text` is shown, not run. A `bash` example runs under `set -euo pipefail` with curl
failing on an HTTP error; `localhost:8000` and `127.0.0.1:8000` are the test server's address."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
# The generated reference pages hold no examples; everything else a reader opens does.
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if "reference" not in p.parts)]
RUN = {"bash", "python"}
SHOWN = {"console", "yaml", "text", "json", "jsonl", ""}
FENCE = re.compile(r"^```(\S*)")
BASH_PRELUDE = 'set -euo pipefail\ncurl() { command curl --fail-with-body --max-time 120 "$@"; }\n'


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    language: str
    code: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(path: Path) -> list[Example]:
    found: list[Example] = []
    language, start, body = None, 0, []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fence = FENCE.match(line)
        if language is None and fence:
            language, start, body = fence.group(1), number, []
        elif language is not None and line.startswith("```"):
            found.append(Example(str(path.relative_to(ROOT)), start, language, "\n".join(body) + "\n"))
            language = None
        elif language is not None:
            body.append(line)
    return found


EXAMPLES = [example for page in PAGES for example in blocks(page)]


def test_every_block_says_whether_it_runs() -> None:
    unknown = [f"{example} ({example.language})" for example in EXAMPLES if example.language not in RUN | SHOWN]
    assert unknown == []
    running = {example.page for example in EXAMPLES if example.language in RUN}
    assert {"docs/getting-started.md", "docs/api/rag.md", "docs/api/jobs.md", "docs/api/batches.md"} <= running
    assert "README.md" in running


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.language in RUN], ids=str)
def test_the_example_runs_against_a_real_server(example: Example, server: ServerProcess, tmp_path: Path) -> None:
    address = server.base_url.removeprefix("http://")
    code = example.code.replace("localhost:8000", address).replace("127.0.0.1:8000", address)
    command = ["bash", "-c", BASH_PRELUDE + code] if example.language == "bash" else [sys.executable, "-c", code]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{example} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.stdout.strip(), f"{example} printed nothing"
