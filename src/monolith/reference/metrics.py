"""The metrics reference: every series `GET /metrics` can export, from the registry itself (name as exposed,
type, labels, help)."""

from __future__ import annotations

from prometheus_client import Metric
from prometheus_client.metrics import MetricWrapperBase

from monolith import metrics
from monolith.engine import EngineStats
from monolith.reference.markdown import cell

# How a family is named in the text format: a counter's samples end in `_total` (a histogram's in `_bucket`,
# `_sum` and `_count`, which PromQL users expect).
EXPOSED = {"counter": "{}_total"}


def families() -> list[tuple[Metric, tuple[str, ...]]]:
    """Each metric family and its label names: the module's metrics, then the engine's view, read from a
    collector over empty stats with one twin (so the per-twin families show their label)."""
    found = []
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            (family,) = value.describe()
            found.append((family, tuple(value._labelnames)))
    engine = metrics.EngineStatsCollector()
    engine.stats = EngineStats(twins=("twin",))
    for family in engine.collect():
        labels = tuple(dict.fromkeys(label for sample in family.samples for label in sample.labels))
        found.append((family, labels))
    return found


def metrics_reference() -> str:
    rows = []
    for family, labels in sorted(families(), key=lambda pair: pair[0].name):
        exposed = EXPOSED.get(family.type, "{}").format(family.name)
        shown = ", ".join(f"`{label}`" for label in labels)
        rows.append(f"| `{exposed}` | {family.type} | {shown} | {cell(family.documentation)} |")
    return "\n".join(
        [
            "# Metrics reference",
            "",
            "Generated from the metrics registry (`monolith.metrics`) by `make reference`; do not edit by hand.",
            "`GET /metrics` serves them in the Prometheus text format, or OpenMetrics when the scraper asks",
            "(then the latency histograms carry a sampled request's trace id as an exemplar).",
            "",
            "| series | type | labels | meaning |",
            "| --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )
