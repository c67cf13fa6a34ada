"""Log lines as text or JSON, the same keys from every library that writes them. A real server's JSON lines and
their trace ids: tests/api/test_tracing.py."""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from collections.abc import Iterator

import pytest

from monolith import logs


@pytest.fixture
def root_handler() -> Iterator[logging.Handler]:
    """A handler of the root logger's own, as the CLI's basicConfig makes; the logging state put back after."""
    handler = logging.StreamHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        from transformers.utils import logging as transformers_logging

        root.removeHandler(handler)
        logging.captureWarnings(False)
        transformers_logging.disable_propagation()  # as transformers left itself
        transformers_logging.enable_default_handler()


def test_json_lines_have_the_keys_vllm_gives_its_own(root_handler: logging.Handler) -> None:
    logs.configure("json")
    record = logging.makeLogRecord({"name": "monolith.jobs", "levelname": "WARNING", "msg": "%s late", "args": ("a",)})
    line = json.loads(root_handler.format(record))
    assert {"asctime", "levelname", "name", "processName", "process", "message"} <= line.keys()
    assert line["message"] == "a late" and line["name"] == "monolith.jobs"


def test_text_stays_text(root_handler: logging.Handler) -> None:
    logs.configure("text")
    line = root_handler.format(logging.makeLogRecord({"name": "monolith", "levelname": "INFO", "msg": "ready"}))
    assert line.endswith("INFO monolith: ready")
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_json_turns_warnings_into_records_and_progress_bars_off(
    root_handler: logging.Handler, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for variable in logs.QUIET_PROGRESS:
        monkeypatch.delenv(variable, raising=False)
    logs.configure("json")
    with caplog.at_level(logging.WARNING, logger="py.warnings"):
        warnings.warn("an old argument", FutureWarning, stacklevel=1)
    assert any("an old argument" in r.getMessage() for r in caplog.records if r.name == "py.warnings")
    assert all(os.environ[variable] == "1" for variable in logs.QUIET_PROGRESS)


def test_uvicorn_and_litestar_write_json_only_when_asked() -> None:
    text, as_json = logs.uvicorn_log_config("text"), logs.uvicorn_log_config("json")
    assert text["formatters"]["access"]["()"] == "uvicorn.logging.AccessFormatter"
    assert as_json["formatters"]["access"] == as_json["formatters"]["default"] == logs.json_formatter()
    assert as_json["handlers"] == text["handlers"], "the same streams, another format"
    assert logs.litestar_formatters("text") is None
    assert logs.litestar_formatters("json") == {"standard": logs.json_formatter()}


def test_json_takes_transformers_lines_too(root_handler: logging.Handler, capsys: pytest.CaptureFixture) -> None:
    from transformers.utils import logging as transformers_logging

    written = io.StringIO()
    root_handler.setStream(written)  # type: ignore[attr-defined]
    logs.configure("json")
    transformers_logging.get_logger("transformers.tokenization_utils_base").warning("sequence too long (613 > 512)")
    assert json.loads(written.getvalue().splitlines()[-1])["message"] == "sequence too long (613 > 512)"
    assert "[transformers]" not in capsys.readouterr().err, "not also written by its own handler"
