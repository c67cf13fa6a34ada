"""The generated reference pages are what `make reference` writes now (a changed default, help text, metric or
route makes one stale), and each names everything of its kind: every setting, CLI command, make target, metric
and route."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from monolith.cli import build_parser
from monolith.config import Settings
from monolith.reference import pages
from monolith.reference.api import served_schema
from monolith.reference.cli import commands
from monolith.reference.make import targets
from monolith.reference.metrics import families
from tests.test_config import fields

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = pages(ROOT)


def page(name: str) -> str:
    return (DOCS / name).read_text()


@pytest.mark.parametrize("name", sorted(PAGES))
def test_a_generated_page_is_not_stale(name: str) -> None:
    assert page(name) == PAGES[name](), f"docs/{name} is stale: run `make reference`"


def test_every_setting_is_in_the_configuration_reference() -> None:
    text = page("reference/configuration.md")
    assert [key for key in fields(Settings) if f"| `{key}` |" not in text] == []


def test_every_cli_command_is_in_the_cli_reference() -> None:
    text = page("reference/cli.md")
    progs = [parser.prog for parser in commands(build_parser())]
    assert {"monolith serve", "monolith model prepare", "monolith sagemaker deploy"} <= set(progs)
    assert [prog for prog in progs if f"## `{prog}`" not in text] == []
    options = [
        option
        for parser in commands(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction)
        for option in action.option_strings
    ]
    assert [option for option in options if option not in text] == []


def test_every_make_target_is_described_in_the_make_reference() -> None:
    described = targets((ROOT / "Makefile").read_text())
    assert {"serve", "test", "test-quick", "docs", "docs-build", "bench"} <= set(described)
    assert [name for name, text in described.items() if not text] == [], "a target without a comment above it"
    text = page("reference/make.md")
    assert [name for name in described if f"| `make {name}` |" not in text] == []


def test_every_metric_is_in_the_metrics_reference() -> None:
    text = page("reference/metrics.md")
    names = [family.name for family, _ in families()]
    assert {"monolith_queue_depth", "monolith_batch_backlog", "monolith_twin_running"} <= set(names)
    assert [name for name in names if f"`{name}" not in text] == []


def test_every_route_is_in_the_api_reference() -> None:
    text = page("reference/api.md")
    routes = [(method.upper(), path) for path, item in served_schema()["paths"].items() for method in item]
    assert ("POST", "/v1/chat/completions") in routes and ("POST", "/rag") in routes
    assert [route for route in routes if f"### `{route[0]} {route[1]}`" not in text] == []
