"""The CLI reference: every command and subcommand of `monolith`, with the help its argument parser prints."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Iterator

from monolith.cli import build_parser

# argparse wraps to the terminal's width; a fixed one makes the page the same on every machine.
fixed_width = functools.partial(argparse.HelpFormatter, width=100)


def commands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and every subcommand's, depth first, in the order they were added."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # an alias maps to the same parser
                yield from commands(child)


def cli_reference() -> str:
    sections = []
    for parser in commands(build_parser()):
        parser.formatter_class = fixed_width
        sections.append(f"## `{parser.prog}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
    head = [
        "# CLI reference",
        "",
        "Generated from the argument parser (`monolith.cli.build_parser`) by `make reference`; do not edit by hand.",
        "Every command takes `--config FILE` (default `configs/cpu.yaml`); settings come from it and from",
        "`MONOLITH_*` variables ([configuration](configuration.md)).",
        "",
    ]
    return "\n".join(head) + "\n".join(sections)
