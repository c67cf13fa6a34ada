"""How the server writes its log lines: text for a terminal, or one JSON object a line for a log pipeline (Loki,
CloudWatch, Elasticsearch). In JSON every line has the same keys, whichever library wrote it: ours, Litestar's,
uvicorn's and vLLM's, in the server's process and in vLLM's engine core process (vLLM formats its own with
python-json-logger and the fields below), with `trace_id` and `span_id` on a line written inside a traced request
(monolith.tracing)."""

from __future__ import annotations

import copy
import logging
import os
from typing import Any, Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# vLLM's own JSON fields (vllm.logging_utils.formatter.JSON_FORMAT), so that its lines and ours parse alike.
JSON_FORMAT = "%(asctime)s %(levelname)s %(name)s %(processName)s %(process)d %(message)s"
# Read when tqdm and huggingface_hub are imported: set before (the CLI reads its settings before importing them).
QUIET_PROGRESS = ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")


def json_formatter() -> dict[str, Any]:
    """A `logging.config.dictConfig` formatter: python-json-logger's, with the record's extra attributes (the
    trace ids among them) as fields of their own."""
    return {"()": "pythonjsonlogger.json.JsonFormatter", "fmt": JSON_FORMAT}


def formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter(JSON_FORMAT)
    return logging.Formatter(TEXT_FORMAT)


def configure(log_format: LogFormat) -> None:
    """The root logger's handlers (what the CLI set up before the settings were read) write in `log_format`. In
    JSON, what would write past logging goes through it or stays quiet: Python's warnings become log records, and
    the progress bars of model loading (tqdm's, Hugging Face's; this process's and, by the environment, the engine
    core's, which is started later) are off."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter(log_format))
    if log_format == "json":
        logging.captureWarnings(True)
        for variable in QUIET_PROGRESS:
            os.environ.setdefault(variable, "1")
        hand_transformers_to_root()


def hand_transformers_to_root() -> None:
    """transformers writes through a handler of its own ("[transformers] <message>", e.g. a tokenizer's warning
    about a long input); its records go to the root logger's handlers instead, in this process's format."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_default_handler()
    transformers_logging.enable_propagation()


def litestar_formatters(log_format: LogFormat) -> dict[str, dict[str, Any]] | None:
    """Litestar's logging config's formatters (it configures the root logger when the app starts); None: its
    default."""
    return {"standard": json_formatter()} if log_format == "json" else None


def uvicorn_log_config(log_format: LogFormat) -> dict[str, Any]:
    """uvicorn's own logging config, its access and error lines in `log_format`."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    if log_format == "json":
        config["formatters"] = {"default": json_formatter(), "access": json_formatter()}
    return config
