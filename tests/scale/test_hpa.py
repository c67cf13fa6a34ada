"""The HPA algorithm the scale demo applies, against the manifest it reads."""

from __future__ import annotations

from dataclasses import replace

from monolith.scale.hpa import Autoscaler, HpaSpec, Rules, raw_desired
from monolith.scale.prometheus import ROOT

SPEC = HpaSpec.from_manifest(ROOT / "configs" / "k8s" / "hpa.yaml")


def test_the_spec_comes_from_the_manifest() -> None:
    assert (SPEC.min_replicas, SPEC.max_replicas, SPEC.target) == (1, 8, 4.0)
    assert SPEC.down.stabilization_s == 300 and SPEC.up.stabilization_s == 0


def test_desired_is_ceil_of_current_times_metric_over_target_outside_the_tolerance() -> None:
    assert raw_desired(1, {"a": 10.0}, 0, 4) == 3  # ceil(1 x 10 / 4)
    assert raw_desired(2, {"a": 6.0, "b": 5.0}, 0, 4) == 3  # ceil(11 / 4)
    assert raw_desired(2, {"a": 4.3, "b": 4.3}, 0, 4) == 2  # within 10%: hold
    assert raw_desired(3, {"a": 0.0, "b": 0.0, "c": 1.0}, 0, 4) == 1
    assert raw_desired(2, {}, 0, 4) == 2  # no metric: no change


def test_starting_pods_count_as_zero_on_a_scale_up() -> None:
    assert raw_desired(2, {"a": 5.0}, 1, 4) == 2  # 5 / (4 x 2) < 1.1: hold while the new pod starts
    assert raw_desired(2, {"a": 20.0}, 1, 4) == 5  # ceil(20 / 4)


def test_scale_up_is_immediate_but_capped_by_the_policies() -> None:
    scaler = Autoscaler(SPEC)
    # 1 -> 3: max(100% of 1, 2 pods) per 30 s
    assert scaler.decide(0, 1, {"a": 40.0}) == 3
    # within the same 30 s period the budget is spent: 3 -> at most 1 + 2 = 3 (pods) or 2 x 1 (percent)
    assert scaler.decide(10, 3, {"a": 40.0, "b": 40.0, "c": 40.0}) == 3
    assert scaler.decide(31, 3, {"a": 40.0, "b": 40.0, "c": 40.0}) == 6  # next period: 100% of 3


def test_scale_down_waits_for_the_stabilization_window_then_steps_one_pod_a_minute() -> None:
    spec = replace(SPEC, down=Rules(60.0, SPEC.down.policies))
    scaler = Autoscaler(spec)
    assert scaler.decide(0, 3, {"a": 4.0, "b": 4.0, "c": 4.0}) == 3
    for t in (10, 30, 59):
        assert scaler.decide(t, 3, {"a": 0.0, "b": 0.0, "c": 0.0}) == 3  # the t=0 recommendation still holds
    assert scaler.decide(61, 3, {"a": 0.0, "b": 0.0, "c": 0.0}) == 2  # window passed; 1 pod per 60 s
    assert scaler.decide(90, 2, {"a": 0.0, "b": 0.0}) == 2
    assert scaler.decide(122, 2, {"a": 0.0, "b": 0.0}) == 1
    assert scaler.decide(200, 1, {"a": 0.0}) == 1  # never below minReplicas
