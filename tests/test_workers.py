"""`make test`'s split between its xdist workers (tests/workers.py): a unit per module, modules that share a
session server in one unit, the longest unit first, and the controller scheduling by the workers' units."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import workers


@dataclass
class Item:
    nodeid: str
    fixturenames: tuple[str, ...] = ()


ITEMS = [
    Item("tests/a/test_alone.py::test_one", ("tmp_path",)),
    Item("tests/a/test_session.py::test_one", ("model_dir", "server")),
    Item("tests/b/test_small.py::test_one", ("small_server",)),
    Item("tests/b/test_both.py::test_one", ("tmp_path",)),
    Item("tests/b/test_both.py::test_two", ("server", "small_server")),  # joins the two shared units
    Item("tests/jobs/test_replicas.py::test_one"),
    Item("tests/c/test_other_session.py::test_one", ("server",)),
]


def test_modules_that_share_a_session_server_are_one_unit_and_the_others_alone() -> None:
    unit_of = workers.units(ITEMS)  # type: ignore[arg-type]
    shared = {module for module, unit in unit_of.items() if unit == unit_of["tests/a/test_session.py"]}
    assert shared == {
        "tests/a/test_session.py",
        "tests/b/test_small.py",
        "tests/b/test_both.py",
        "tests/c/test_other_session.py",
    }
    assert unit_of["tests/a/test_alone.py"] == "tests/a/test_alone.py"
    assert unit_of["tests/jobs/test_replicas.py"] == "tests/jobs/test_replicas.py"


def test_units_go_longest_first_and_the_controller_schedules_by_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pytestconfig: pytest.Config
) -> None:
    monkeypatch.setenv(workers.UNITS_FILE, str(tmp_path / "units.json"))
    monkeypatch.setattr(workers, "SECONDS", {"tests/jobs/test_replicas.py": 100, "tests/a/test_session.py": 30})
    order = [item.nodeid for item in workers.ordered(ITEMS)]  # type: ignore[arg-type]
    # The shared unit (30 + 3 x 1 s) after the replicas (100 s); within a unit, collection order.
    assert order[0] == "tests/jobs/test_replicas.py::test_one"
    assert order[1:6] == [i.nodeid for i in ITEMS if i.nodeid.startswith(("tests/a/test_s", "tests/b", "tests/c"))]
    assert order[6] == "tests/a/test_alone.py::test_one"
    written = json.loads((tmp_path / "units.json").read_text())
    assert written == workers.units(ITEMS)  # type: ignore[arg-type]

    monkeypatch.setattr(pytestconfig.option, "loadscopereorder", True)
    monkeypatch.setattr(pytestconfig.option, "tx", ["popen", "popen"])  # what `-n 2` makes of it
    monkeypatch.setattr(pytestconfig.option, "numprocesses", None)
    scheduling = workers.UnitScheduling(pytestconfig)
    assert pytestconfig.option.loadscopereorder is False, "the workers' order, not xdist's by test count"
    assert scheduling._split_scope("tests/b/test_small.py::test_one") == written["tests/a/test_session.py"]
    assert scheduling._split_scope("tests/b/test_both.py::test_one") == written["tests/a/test_session.py"]
    assert scheduling._split_scope("tests/a/test_alone.py::test_one[x]") == "tests/a/test_alone.py"
