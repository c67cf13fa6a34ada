"""A vector store that is missing a collection, or unreachable, answers 503 `dependency_unavailable` over HTTP,
never an answer without context. The server talks to Qdrant by URL here, as in production; the Qdrant on the
other end is a stand-in that answers the one call these paths make (the real Qdrant client and store are
tested in local mode in tests/retrieval)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import ManagedServer, managed_server


class QdrantStandIn:
    """Answers `GET /collections/{name}/exists` as Qdrant's REST API does; `missing` names absent ones."""

    def __init__(self) -> None:
        self.missing: set[str] = set()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                if len(parts) == 3 and parts[0] == "collections" and parts[2] == "exists":
                    body = {"result": {"exists": parts[1] not in stand_in.missing}, "status": "ok", "time": 0.0}
                    self._send(200, body)
                else:
                    self._send(404, {"status": {"error": f"not found: {self.path}"}, "time": 0.0})

            def _send(self, status: int, body: dict) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.handler = Handler
        self.port = 0
        self.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listens (again, on the same port: HTTPServer reuses the address)."""
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def qdrant() -> Iterator[QdrantStandIn]:
    stand_in = QdrantStandIn()
    yield stand_in
    stand_in.close()


@pytest.fixture(scope="module")
def by_url(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, qdrant: QdrantStandIn) -> Iterator[ManagedServer]:
    env = {"MONOLITH_QDRANT__URL": qdrant.url, "MONOLITH_QDRANT__TIMEOUT_S": "2", "MONOLITH_RAG__EXPAND": "false"}
    # Retrieval is what is tested, not the tokens: the scripted engine's server process, with the real RAG.
    with managed_server(tmp_path_factory.mktemp("by-url"), model_dir, env, scripted=True) as managed:
        yield managed


RAG = {"query": "How do I deploy an LLM?", "max_tokens": 4, "self_query": False}
# self_query off: it would ask for the authors first (a facet the stand-in does not answer: also a 503).
RAG_CHAT = {
    "model": "twin-rag",
    "messages": [{"role": "user", "content": "How do I deploy an LLM?"}],
    "max_tokens": 4,
    "rag": {"self_query": False},
}


def assert_dependency_down(response: httpx.Response, words: str) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["type"] == "dependency_unavailable" and words in error["message"], error


def test_a_missing_collection_is_a_503_naming_it(by_url: ManagedServer, qdrant: QdrantStandIn) -> None:
    base_url = by_url.up().base_url
    qdrant.missing = {"embedded_articles"}  # the first collection searched
    try:
        assert_dependency_down(httpx.post(f"{base_url}/rag", json=RAG, timeout=60), "embedded_articles is missing")
        response = httpx.post(f"{base_url}/v1/chat/completions", json=RAG_CHAT, timeout=60)
        assert_dependency_down(response, "embedded_articles is missing")
    finally:
        qdrant.missing = set()


def test_an_unreachable_qdrant_is_a_503_and_the_server_stays_up(by_url: ManagedServer, qdrant: QdrantStandIn) -> None:
    base_url = by_url.up().base_url
    qdrant.close()  # connection refused until it listens again
    try:
        assert_dependency_down(httpx.post(f"{base_url}/rag", json=RAG, timeout=60), "vector store unavailable")
        stream = httpx.post(f"{base_url}/rag", json={**RAG, "stream": True}, timeout=60)
        assert_dependency_down(stream, "vector store unavailable")  # before the first byte: a real status
        plain = {"model": "twin", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        assert httpx.post(f"{base_url}/v1/chat/completions", json=plain, timeout=60).status_code == 200
        assert httpx.get(f"{base_url}/health/live", timeout=10).status_code == 200
    finally:
        qdrant.start()
