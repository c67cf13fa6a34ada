"""How `make test` splits the suite between its two xdist workers (`-n 2`).

A unit of work is a module, so that a module's own server starts once; modules that share a session server (the
session's `server`, the API tests' `small_server`) are one unit, so that each of those starts once too, on one
worker. Units go out longest first (longest-processing-time scheduling), so that the two workers end together
rather than one of them starting the scale demo when the other is done. A module missing from `SECONDS` costs
balance, never correctness.

Only the workers collect (they know each test's fixtures); the controller schedules. So each worker writes the
units it found to a file the controller named (`UNITS_FILE`), and the controller's `UnitScheduling` reads it once
every worker has collected. (xdist's own `--dist loadgroup` appends the group to a test's node id, which pytest
9.2's structured node ids ignore: every test became a unit of its own.)
"""

from __future__ import annotations

import atexit
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

UNITS_FILE = "MONOLITH_TEST_UNITS_FILE"  # the environment variable that names it, set by the controller

# The session fixtures worth one start per session: every module that uses one joins its unit.
SHARED = ("server", "small_server")

# Seconds per module on this 2-core machine in `make test`'s two workers (a whole-suite run, 830 s), for the order
# only; the ones past 20 s.
SECONDS = {
    "tests/scale/test_demo.py": 136,
    "tests/api/test_langchain_standard.py": 135,
    "tests/jobs/test_replicas.py": 114,
    "tests/api/test_fuzz.py": 108,
    "tests/jobs/test_preemption.py": 100,
    "tests/jobs/test_spare_capacity.py": 100,
    "tests/api/test_twins.py": 91,
    "tests/jobs/test_drain.py": 68,
    "tests/jobs/test_batch_lines.py": 58,
    "tests/api/test_overload_real.py": 55,
    "tests/jobs/test_store_outage.py": 53,
    "tests/jobs/test_engine_death.py": 52,
    "tests/jobs/test_batches.py": 51,
    "tests/jobs/test_durability.py": 45,
    "tests/api/test_webui_browser.py": 44,
    "tests/bench/test_batch.py": 39,
    "tests/docs/test_examples.py": 33,
    "tests/test_cli.py": 32,
    "tests/api/test_batches.py": 25,
    "tests/api/test_sagemaker.py": 23,
}


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def units(items: list[pytest.Item]) -> dict[str, str]:
    """Module -> the unit it runs in: a module alone, or the modules joined by a shared session fixture."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        parent.setdefault(name, name)
        while parent[name] != name:
            name = parent[name]
        return name

    for item in items:
        module = root(module_of(item.nodeid))
        for shared in SHARED:
            if shared in getattr(item, "fixturenames", ()):
                parent[module] = module = root(f"shared:{shared}")
    return {module_of(item.nodeid): root(module_of(item.nodeid)) for item in items}


def ordered(items: list[pytest.Item]) -> list[pytest.Item]:
    """The items ordered by unit, the longest unit first (a unit keeps its modules' collection order); the units
    written for the controller."""
    unit_of = units(items)
    weight: dict[str, float] = defaultdict(float)
    for module in set(unit_of):
        weight[unit_of[module]] += SECONDS.get(module, 1.0)
    rank = {unit: n for n, unit in enumerate(sorted(weight, key=lambda unit: (-weight[unit], unit)))}
    path = Path(os.environ[UNITS_FILE])
    partial = path.with_name(f"{path.name}.{os.getpid()}")  # both workers write the same; neither sees half
    partial.write_text(json.dumps(unit_of))
    partial.replace(path)
    return sorted(items, key=lambda item: rank[unit_of[module_of(item.nodeid)]])


def bind_engines_to_this_workers_core() -> None:
    """Under xdist, the engines a worker starts run one OpenMP thread on a core of their own (gw0 the first,
    gw1 the second; inherited by every process the worker starts). Two engines with the default two threads
    each on two cores spin at each other's barriers: 200 tokens took 113 s with another engine beside, against
    7.9 s alone; one bound thread each, 12-13 s side by side (9.5 s alone)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return
    cores = sorted(os.sched_getaffinity(0))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", str(cores[int(worker[2:]) % len(cores)]))
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def name_units_file() -> None:
    """The controller: a file for the workers' units (they inherit the variable)."""
    handle, path = tempfile.mkstemp(prefix="monolith-test-units-", suffix=".json")
    os.close(handle)
    atexit.register(Path(path).unlink, missing_ok=True)
    os.environ[UNITS_FILE] = path


class UnitScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with a unit as the scope, in the workers' order (no reordering by size)."""

    def __init__(self, config: pytest.Config, log=None) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False
        self._unit_of: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._unit_of is None:  # read when scheduling starts: every worker has collected by then
            text = Path(os.environ[UNITS_FILE]).read_text()
            self._unit_of = json.loads(text) if text else {}
        module = module_of(nodeid)
        return self._unit_of.get(module, module)
