"""Unknown fields of an OpenAI request are ignored (newer clients keep working) and each name is logged once
per route at debug level; the real app and routes, a scripted engine."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from monolith.api import unknown_fields
from monolith.config import Settings
from tests.conftest import free_port
from tests.scripted import ScriptedEngine, ThreadedServer

BODY = {"model": "twin", "prompt": "say something", "max_tokens": 2}


class Recorder(logging.Handler):
    """On the module's own logger: the app's logging config does not propagate to pytest's caplog."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    monkeypatch.setattr(unknown_fields, "_seen", set())
    logger, recorder = logging.getLogger(unknown_fields.__name__), Recorder()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(recorder)
    try:
        yield recorder.messages
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(level)


def test_an_unknown_field_is_ignored_and_logged_once(settings: Settings, logged: list[str]) -> None:
    with ThreadedServer(settings, ScriptedEngine(gap_s=0.001), free_port()) as server:
        for _ in range(3):
            sent = {**BODY, "a_future_field": {"x": 1}, "another": 2}
            response = httpx.post(f"{server.base_url}/v1/completions", json=sent)
            assert response.status_code == 200, response.text
        plain = httpx.post(f"{server.base_url}/v1/completions", json=BODY)
        assert plain.status_code == 200
        malformed = httpx.post(f"{server.base_url}/v1/completions", content=b"{not json")
        assert malformed.status_code == 400
    assert logged == [
        "ignored the unknown field 'a_future_field' of /v1/completions (logged once)",
        "ignored the unknown field 'another' of /v1/completions (logged once)",
    ]


def test_names_past_the_bound_are_not_remembered(
    settings: Settings, logged: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client sending a new name each time cannot grow the process's memory."""
    monkeypatch.setattr(unknown_fields, "MAX_REMEMBERED", 3)
    with ThreadedServer(settings, ScriptedEngine(gap_s=0.001), free_port()) as server:
        for i in range(5):
            response = httpx.post(f"{server.base_url}/v1/completions", json={**BODY, f"field_{i}": 1})
            assert response.status_code == 200
    assert len(unknown_fields._seen) == 3
    assert len(logged) == 3
