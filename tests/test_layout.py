"""The floors of src/monolith: protocol below serving, serving below api. Only the entry points (the CLI and the
benchmark, which start servers) import api/."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "monolith"
ENTRY_POINTS = {"cli.py", "bench"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def below(floor: str) -> list[Path]:
    return [p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] not in {"api", *ENTRY_POINTS} | {floor}]


def test_nothing_below_api_imports_it() -> None:
    offenders = [
        str(p.relative_to(SRC)) for p in below("api") if any(m.startswith("monolith.api") for m in imported_modules(p))
    ]
    assert offenders == []


def test_protocol_imports_no_other_floor() -> None:
    for path in (SRC / "protocol").glob("*.py"):
        upward = [
            m for m in imported_modules(path) if m.startswith("monolith.") and not m.startswith("monolith.protocol")
        ]
        assert upward == [], path.name
