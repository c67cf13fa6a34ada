"""`make scale-demo`, short: real replicas scale up under a burst and back down after the window."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import run

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_scale_demo_scales_up_under_the_burst_and_back_down(tmp_path: Path, model_dir: Path) -> None:
    result = run([sys.executable, "-m", "monolith.scale.demo", "--quick", "--out", str(tmp_path)], 900, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "timeline.json").read_text())
    timeline = summary["timeline"]
    assert summary["peak_replicas"] == 2 and summary["final_replicas"] == 1
    # Up during the burst; down only after it and after the stabilization window.
    first_up = next(r for r in timeline if r["desired"] == 2)
    assert first_up["phase"] == "burst"
    burst_end = max(r["t_s"] for r in timeline if r["phase"] == "burst")
    first_down = next(r for r in timeline if r["t_s"] > first_up["t_s"] and r["desired"] == 1)
    assert first_down["t_s"] - burst_end >= summary["hpa"]["window_s"] - summary["profile"]["period_s"]
    # The adapter query gave one value per ready pod, from real Prometheus scraping real replicas.
    assert any(len(r["per_pod"]) == 2 for r in timeline)
    # Nothing failed except by 429 (retried after Retry-After); every stopped replica exited 0.
    assert set(summary["statuses"]) <= {"200", "429"} and summary["statuses"]["200"] > 0
    assert summary["replica_exit_codes"] and set(summary["replica_exit_codes"]) == {0}
    assert (tmp_path / "scale.png").stat().st_size > 10_000
