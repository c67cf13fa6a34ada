"""vLLM's scheduler statistics into the engine's EngineStats, which /metrics reads."""

from __future__ import annotations

from typing import Any

from monolith.engine.contract import EngineStats


def stats_logger_factory(stats: EngineStats):
    """vLLM pushes scheduler stats to stat loggers after each step; keep the latest for /metrics."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class SchedulerStatsSink(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            pass

        def record(self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None, engine_idx: int = 0):
            if scheduler_stats is not None:
                stats.waiting = scheduler_stats.num_waiting_reqs
                stats.running = scheduler_stats.num_running_reqs
                stats.kv_cache_usage = scheduler_stats.kv_cache_usage
                stats.twins_running = dict(scheduler_stats.running_lora_adapters)
                stats.twins_waiting = dict(scheduler_stats.waiting_lora_adapters)
                cache = scheduler_stats.prefix_cache_stats  # this step's lookups; vLLM's own preemptions apart
                if cache is not None:
                    stats.prefix_cache_queries += cache.queries + cache.preempted_queries
                    stats.prefix_cache_hits += cache.hits + cache.preempted_hits

        def log_engine_initialized(self) -> None:
            pass

    return SchedulerStatsSink
