"""The CLI reference: every command and subcommand of `monolith`, with the help its argument parser prints."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator

from monolith.cli import build_parser

WIDTH = "100"  # argparse wraps to the terminal; a fixed width makes the page the same on every machine


def commands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and every subcommand's, depth first, in the order they were added."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # an alias maps to the same parser
                yield from commands(child)


def cli_reference() -> str:
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        sections = [
            f"## `{parser.prog}`\n\n```text\n{parser.format_help().rstrip()}\n```\n"
            for parser in commands(build_parser())
        ]
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    head = [
        "# CLI reference",
        "",
        "Generated from the argument parser (`monolith.cli.build_parser`) by `make reference`; do not edit by hand.",
        "Every command takes `--config FILE` (default `configs/cpu.yaml`); settings come from it and from",
        "`MONOLITH_*` variables ([configuration](configuration.md)).",
        "",
    ]
    return "\n".join(head) + "\n".join(sections)
