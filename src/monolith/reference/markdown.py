"""What every generated page writes the same way: a table cell."""

from __future__ import annotations

from typing import Any


def cell(text: Any) -> str:
    """One table cell: on one line, its pipes escaped (a `|` in a description would end the cell)."""
    return " ".join(str(text).split()).replace("|", "\\|")
