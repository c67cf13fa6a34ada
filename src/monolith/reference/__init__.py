"""The documentation's reference pages, generated from what they describe: the settings' fields, the CLI's
argument parser, the metrics registry, the served OpenAPI schema and the Makefile. `make reference` writes them
under docs/reference/; a test fails when one is stale, so the manual cannot drift from the code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from monolith.config import reference as configuration
from monolith.reference.api import api_reference
from monolith.reference.cli import cli_reference
from monolith.reference.make import make_reference
from monolith.reference.metrics import metrics_reference


def pages(root: Path) -> dict[str, Callable[[], str]]:
    """Each generated page, by its path under docs/, and what renders it (`root`: the repository's root)."""
    return {
        "reference/configuration.md": configuration,
        "reference/cli.md": cli_reference,
        "reference/make.md": lambda: make_reference(root / "Makefile"),
        "reference/metrics.md": metrics_reference,
        "reference/api.md": api_reference,
    }
