"""The tool-arguments benchmark's own parts: every case is a request the server plans, in each mode, and an answer
is scored on its first call's arguments and on one call after repeats are dropped."""

from __future__ import annotations

import pytest

from monolith.bench.tool_args import cases, plan_for, score


@pytest.mark.parametrize("mode", ["required", "auto", "named"])
def test_every_case_is_a_request_the_server_plans(mode: str) -> None:
    requests = cases()
    assert len(requests) == 34
    for tool, question, _ in requests:
        assert plan_for(tool, question, mode).mode == mode


def test_an_answer_is_scored_on_its_arguments_and_its_calls() -> None:
    tool, question, want = cases()[1]  # add(a, b): 17 plus 25
    plan = plan_for(tool, question, "required")
    right = '{"name":"add","arguments":{"a":17,"b":25}}'
    assert score(plan, f"[{right}]", want) == (True, True)
    assert score(plan, f"[{right},{right}]", want) == (True, True)  # a repeat is answered once
    assert score(plan, f'[{right},{{"name":"add","arguments":{{"a":1,"b":2}}}}]', want) == (True, False)
    assert score(plan, '[{"name":"add","arguments":{"a":25,"b":17}}]', want) == (False, True)
