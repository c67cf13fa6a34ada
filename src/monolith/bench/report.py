"""What `make bench` writes: the ratios against each system's peer, bench.md, and the plots."""

from __future__ import annotations

from pathlib import Path

from monolith.bench import invocations, mixed, structured, tracing, twins

PEERS = {"monolith": "vllm", "monolith /rag": "split /rag"}


def ratios(rows: list[dict]) -> list[dict]:
    by = {(r["system"], r["load"]): r for r in rows}
    out = []
    for (system, load), r in by.items():
        peer = by.get((PEERS.get(system, ""), load))
        if peer is None:
            continue
        out.append(
            {
                "compare": f"{system} / {peer['system']}",
                "e2e_p50_ratio": round(r["e2e_p50_s"] / peer["e2e_p50_s"], 3) if peer["e2e_p50_s"] else None,
                "load": load,
                "throughput_ratio": round(r["output_tokens_per_s"] / peer["output_tokens_per_s"], 3),
                "ttft_p50_ratio": round(r["ttft_p50_s"] / peer["ttft_p50_s"], 3) if peer["ttft_p50_s"] else None,
            }
        )
    return out


def markdown(result: dict) -> str:
    lines = [f"# Benchmark ({result['profile_name']} profile, {result['machine']})"]
    if result["rows"]:  # parts 1 and 2 (a `--parts` subset may leave them out)
        lines += [
            "",
            f"{result['model']}; /v1/completions: {result['max_tokens']} output tokens per request (ignore_eos); "
            f"/rag: {result['profile']['rag_max_tokens']} at most; temperature 0, streamed. Latencies in seconds.",
            "",
            "| system | load | req/s | output tok/s | TTFT p50 | TTFT p99 | e2e p50 | e2e p99 | retrieval share p50 "
            "| errors | 429 |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {r['system']} | {r['load']} | {r['requests_per_s']} | {r['output_tokens_per_s']} | {r['ttft_p50_s']} "
            f"| {r['ttft_p99_s']} | {r['e2e_p50_s']} | {r['e2e_p99_s']} | {r['retrieval_share_p50']} "
            f"| {r['errors']} | {r['rejected_429']} |"
            for r in result["rows"]
        ]
        lines += [
            "",
            "Targets: monolith / vllm serve throughput >= 0.95 and TTFT p50 <= 1.1; monolith /rag faster end to end",
            "than the split (e2e p50 ratio < 1); retrieval under 10% of end-to-end latency at concurrency 1.",
            "",
            "| compare | load | throughput ratio | TTFT p50 ratio | e2e p50 ratio |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {r['compare']} | {r['load']} | {r['throughput_ratio']} | {r['ttft_p50_ratio']} | {r['e2e_p50_ratio']} |"
            for r in result["ratios"]
        ]
    parts = batch_markdown(result.get("batch")) + tax_markdown(result.get("rag_tax"))
    parts += structured.markdown(result.get("structured")) + mixed.markdown(result.get("mixed"))
    parts += invocations.markdown(result.get("invocations")) + twins.markdown(result.get("twins"))
    parts += tracing.markdown(result.get("tracing"))
    return "\n".join(lines + parts) + "\n"


def tax_markdown(tax: dict | None) -> list[str]:
    if not tax:
        return []
    lines = [
        "",
        "RAG tax: /rag end to end at concurrency 1 over a plain completion of its own final prompt, as many tokens.",
        "",
        "| /rag mode | rounds | answer tokens at most | /rag mean s | plain mean s | tax | /rag steps, mean ms |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for mode, t in tax.items():
        steps = ", ".join(f"{step} {ms:.0f}" for step, ms in t["step_ms_mean"].items())
        lines.append(
            f"| {mode} | {t['rounds']} | {t['max_tokens']} | {t['rag_mean_s']} | {t['plain_mean_s']} | {t['tax']} "
            f"| {steps} |"
        )
    return lines


def batch_markdown(batch: dict | None) -> list[str]:
    if batch is None:
        return ["", "Batch (`monolith batch` against `vllm run-batch`): not run in this profile."]
    lines = [
        "",
        f"Batch: {batch['lines']} chat lines, {batch['max_tokens']} output tokens each (ignore_eos); rates from "
        f"{batch['lines']} lines minus {batch['small']}, so process start and model load cancel out.",
        "",
        "| system | wall s, all lines (incl. load) | lines/s | output tok/s |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['system']} | {r['wall_s']} | {r['lines_per_s']} | {r['output_tokens_per_s']} |" for r in batch["rows"]
    ]
    return [*lines, "", f"monolith batch / vllm run-batch throughput: {batch['throughput_ratio']}"]


def plots(result: dict, out: Path) -> None:
    mixed.plot(result.get("mixed"), out)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    closed = [r for r in result["rows"] if r["concurrency"]]
    charts = (
        ("/v1/completions", ("output_tokens_per_s",), "throughput.png", "output tokens/s"),
        ("/v1/completions", ("ttft_p50_s", "e2e_p50_s"), "latency.png", "seconds (p50)"),
        ("/rag", ("e2e_p50_s", "ttft_p50_s"), "rag.png", "seconds (p50)"),
    )
    for route, metrics, file, label in charts:
        if not any(r["route"] == route for r in closed):
            continue  # that part was not run
        fig, ax = plt.subplots(figsize=(7, 4))
        for system in sorted({r["system"] for r in closed if r["route"] == route}):
            rows = [r for r in closed if r["system"] == system]
            for m in metrics:
                ax.plot([r["concurrency"] for r in rows], [r[m] for r in rows], marker="o", label=f"{system} {m}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
        ax.set_title(f"{route}, {result['machine']}")
        fig.tight_layout()
        fig.savefig(out / file, dpi=100)
        plt.close(fig)
