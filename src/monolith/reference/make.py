"""The make targets: each `.PHONY` target of the Makefile with the comment written above it."""

from __future__ import annotations

import re
from pathlib import Path

from monolith.reference.markdown import cell


def targets(makefile: str) -> dict[str, str]:
    """Each phony target and its description (the comment lines right above its rule, joined)."""
    lines = makefile.splitlines()
    phony = next(line for line in lines if line.startswith(".PHONY:")).split(":", 1)[1].split()
    found: dict[str, str] = {}
    for i, line in enumerate(lines):
        match = re.match(r"^([a-z][\w-]*):(?!=)", line)
        if not match or match.group(1) not in phony:
            continue
        comment: list[str] = []
        j = i - 1
        while j >= 0 and (lines[j].startswith("#") or re.match(r"^[A-Z_]+ \??=", lines[j])):
            if lines[j].startswith("#"):
                comment.insert(0, lines[j].lstrip("# ").strip())
            j -= 1
        found[match.group(1)] = " ".join(comment)
    return {name: found.get(name, "") for name in phony}


def make_reference(makefile: Path) -> str:
    rows = [f"| `make {name}` | {cell(text)} |" for name, text in targets(makefile.read_text()).items()]
    return "\n".join(
        [
            "# Make targets",
            "",
            "Generated from the Makefile's comments by `make reference`; do not edit by hand. `make serve` and",
            "`make test` install what they need on a fresh clone; the others too, each what it needs.",
            "",
            "| target | what it does |",
            "| --- | --- |",
            *rows,
            "",
        ]
    )
