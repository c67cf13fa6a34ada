"""The floors of src/monolith: a module imports only from floors below its own (or from its own package).
The bottom floor (config, errors, metrics) imports nothing else of the project; protocol and the engine stand
on it; admission on them, the background budget (scheduling) on admission, resuming a paused generation and
the work context (lane, ticket, slot held) on the budget, generation on all of those; serving on generation and
retrieval; jobs on serving and the store; the runtime on all of those; api/ on the runtime; and only the entry
points (the benchmark, then the CLI and the scale demo, which start it) may import api/; the generated reference
pages of the documentation read all of them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "monolith"

# Each top-level module or package of monolith, and its floor. Imports go strictly down, or stay in a package.
FLOORS: dict[str, int] = {
    "config": 0,
    "errors": 0,
    "metrics": 0,
    "logs": 0,
    "packaged": 0,
    "protocol": 1,
    "engine": 1,
    "model_prep": 1,
    "training": 1,
    "deploy": 1,
    "admission": 2,
    "twin_slots": 2,
    "tracing": 2,
    "scheduling": 3,
    "resume": 4,
    "work": 4,
    "generation": 5,
    "retrieval": 6,
    "store": 6,
    "serving": 7,
    "jobs": 8,
    "evaluation": 8,
    "runtime": 9,
    "api": 10,
    "cli": 12,
    "bench": 11,
    "scale": 12,
    "reference": 13,  # the documentation's generated pages: renders the CLI, the app's schema, the metrics
}
# Lazy imports (inside a function) count too: a cycle that only shows at run time is still a cycle.


def imported_modules(source: str) -> set[str]:
    tree = ast.parse(source)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def room_of(relative: Path) -> str:
    """The top-level module or package a file belongs to (`serving` for serving/chat.py, `config` for config.py)."""
    return relative.parts[0].removesuffix(".py")


def violations(relative: Path, source: str) -> list[str]:
    room = room_of(relative)
    if room == "__init__":
        return []
    found = []
    for module in imported_modules(source):
        if not module.startswith("monolith."):
            continue
        target = module.split(".")[1]
        if target != room and FLOORS[target] >= FLOORS[room]:
            found.append(f"{relative} imports {module} (floor {FLOORS[target]} >= {FLOORS[room]})")
    return found


def test_every_module_has_a_floor() -> None:
    rooms = {room_of(p.relative_to(SRC)) for p in SRC.rglob("*.py")} - {"__init__"}
    assert rooms - FLOORS.keys() == set(), "a new module or package needs its floor in FLOORS"


def test_imports_only_go_down() -> None:
    offenders = [v for p in sorted(SRC.rglob("*.py")) for v in violations(p.relative_to(SRC), p.read_text())]
    assert offenders == []


@pytest.mark.parametrize("upward", ["monolith.jobs.destinations", "monolith.api.app", "monolith.serving"])
def test_a_bottom_floor_module_that_imports_a_higher_one_is_caught(upward: str) -> None:
    """The check itself can fail: config.py importing jobs lazily (what config.py once did) is caught."""
    source = (SRC / "config.py").read_text() + f"\n\ndef _lazy() -> None:\n    import {upward}\n"
    assert violations(Path("config.py"), source) == [
        f"config.py imports {upward} (floor {FLOORS[upward.split('.')[1]]} >= 0)"
    ]


# What a generation serves travels as an argument (monolith.work.Work), and each shared object is built once by the
# composition root (the Runtime) and handed down: a ContextVar or a module-level instance is a channel nobody sees
# in a signature.
HIDDEN_CHANNELS = ("ContextVar", "Admission", "BackgroundBudget", "Generator", "Runtime")


def hidden_channels(relative: Path, source: str) -> list[str]:
    """Module-level assignments that build a ContextVar or one of the shared objects."""
    found = []
    for node in ast.parse(source).body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if isinstance(value, ast.Call):
            called = value.func.id if isinstance(value.func, ast.Name) else getattr(value.func, "attr", "")
            if called in HIDDEN_CHANNELS:
                found.append(f"{relative}:{node.lineno} builds a module-level {called}")
    return found


def test_no_module_builds_a_context_var_or_a_shared_object_of_its_own() -> None:
    offenders = [v for p in sorted(SRC.rglob("*.py")) for v in hidden_channels(p.relative_to(SRC), p.read_text())]
    assert offenders == []


@pytest.mark.parametrize("line", ['LANE: ContextVar[str] = ContextVar("lane")', "ADMISSION = Admission()"])
def test_a_module_level_context_var_or_admission_is_caught(line: str) -> None:
    assert hidden_channels(Path("admission.py"), f"import x\n{line}\n") == [
        f"admission.py:2 builds a module-level {line.split('=')[1].strip().split('(')[0]}"
    ]
