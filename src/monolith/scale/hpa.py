"""The Kubernetes HPA algorithm for a Pods metric with an AverageValue target, and its `behavior`.

Follows pkg/controller/podautoscaler: desired = ceil(current x metric / target) with a 0.1
tolerance; pods without a metric yet (starting) count as 0 on a scale-up; a scale-down takes the
highest recommendation of the stabilization window; scaling policies cap each step.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import yaml

TOLERANCE = 0.1


@dataclass(frozen=True)
class Policy:
    kind: str  # Pods or Percent
    value: int
    period_s: float


@dataclass(frozen=True)
class Rules:
    stabilization_s: float
    policies: tuple[Policy, ...]
    select: str = "Max"


@dataclass(frozen=True)
class HpaSpec:
    min_replicas: int
    max_replicas: int
    target: float
    up: Rules
    down: Rules

    @classmethod
    def from_manifest(cls, path: Path) -> HpaSpec:
        spec = yaml.safe_load(path.read_text())["spec"]

        def rules(raw: dict) -> Rules:
            policies = tuple(Policy(p["type"], int(p["value"]), float(p["periodSeconds"])) for p in raw["policies"])
            return Rules(float(raw["stabilizationWindowSeconds"]), policies, raw.get("selectPolicy", "Max"))

        target = spec["metrics"][0]["pods"]["target"]["averageValue"]
        return cls(
            spec["minReplicas"],
            spec["maxReplicas"],
            float(target),
            rules(spec["behavior"]["scaleUp"]),
            rules(spec["behavior"]["scaleDown"]),
        )


def raw_desired(current: int, per_pod: dict[str, float], pending: int, target: float) -> int:
    """The metric's recommendation before behavior: what `kubectl describe hpa` calls desired."""
    if not per_pod:
        return current
    total = sum(per_pod.values())
    ratio = total / (target * len(per_pod))
    if abs(ratio - 1) <= TOLERANCE:
        return current
    counted = len(per_pod)
    if ratio > 1 and pending:
        # Starting pods count as using nothing; if that removes the need, hold.
        counted += pending
        ratio = total / (target * counted)
        if ratio <= 1 + TOLERANCE:
            return current
    return math.ceil(ratio * counted)


@dataclass
class Autoscaler:
    spec: HpaSpec
    recommendations: deque[tuple[float, int]] = field(default_factory=deque)
    changes: deque[tuple[float, int]] = field(default_factory=deque)  # (time, replicas added or removed)

    def decide(self, now: float, current: int, per_pod: dict[str, float], pending: int = 0) -> int:
        desired = raw_desired(current, per_pod, pending, self.spec.target)
        desired = min(max(desired, self.spec.min_replicas), self.spec.max_replicas)
        self.recommendations.append((now, desired))
        horizon = max(self.spec.up.stabilization_s, self.spec.down.stabilization_s)
        while self.recommendations and now - self.recommendations[0][0] > horizon:
            self.recommendations.popleft()
        if desired > current:
            window = [r for t, r in self.recommendations if now - t <= self.spec.up.stabilization_s]
            target = max(current, min(window))  # up: the lowest recommendation of its window
            target = min(target, self._up_limit(now, current))
        elif desired < current:
            window = [r for t, r in self.recommendations if now - t <= self.spec.down.stabilization_s]
            target = min(current, max(window))  # down: the highest recommendation of its window
            target = max(target, self._down_limit(now, current))
        else:
            target = current
        if target != current:
            self.changes.append((now, target - current))
        return target

    def _changed(self, now: float, period_s: float, up: bool) -> int:
        return sum(abs(d) for t, d in self.changes if now - t < period_s and (d > 0) == up)

    def _up_limit(self, now: float, current: int) -> int:
        """The most replicas the scale-up policies allow, counting what their periods already added."""
        limits = []
        for p in self.spec.up.policies:
            start = current - self._changed(now, p.period_s, up=True)
            limits.append(start + p.value if p.kind == "Pods" else math.ceil(start * (1 + p.value / 100)))
        return max(limits) if self.spec.up.select == "Max" else min(limits)

    def _down_limit(self, now: float, current: int) -> int:
        limits = []
        for p in self.spec.down.policies:
            start = current + self._changed(now, p.period_s, up=False)
            limits.append(start - p.value if p.kind == "Pods" else start - math.ceil(start * p.value / 100))
        return min(limits) if self.spec.down.select == "Max" else max(limits)
