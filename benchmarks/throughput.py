"""Throughput figures of the hot paths, measured in one run on this machine.

    python -m benchmarks.throughput [--dataset ml-100k] [--item-llm minilm] [--threads 2] [--skip-train]

1. item embedding: the item LLM over every item text of the dataset (length-bucketed
   batches, no grad): items/s, text tokens/s, share of padding tokens computed, and
   achieved GFLOP/s (2 x non-embedding parameters per computed token, attention not
   counted) against a plain fp32 torch matmul measured in the same run;
2. training step time, HLLM vs SASRec (one epoch each, back to back; the plugin's
   defaults for the dataset), seconds per step and per epoch;
3. generation tokens/s, batch 1 vs batch 8, with the embedded SmolLM2 (the creative
   LLM's backbone), 16 prompts x 32 new tokens each.

Writes ``throughput-<dataset>.json`` to ``--out-dir``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def matmul_gflops(size: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def item_embedding(dataset: str, item_llm: str, overrides: dict) -> dict:
    from recbole.config import Config
    from recbole.data import create_dataset

    from recbole_hllm.data.item_text import build_item_texts
    from recbole_hllm.model.item_encoder import ItemEncoder

    config = Config(model="HLLM", dataset=dataset, config_dict={"item_llm": item_llm, "state": "WARNING",
                                                                "item_embedding_cache": False, **overrides})
    data = create_dataset(config)
    texts = build_item_texts(data, config["text_fields"], config["item_text_template"], config["missing_text"])
    encoder = ItemEncoder(config, texts, torch.device("cpu"))
    lengths = encoder.text_lengths[1:] + 1  # + the [ITEM] token
    order = torch.argsort(lengths, descending=True)
    computed = sum(int(lengths[ids].max()) * len(ids) for ids in order.split(encoder.batch_size))
    backbone = encoder._backbone()
    params = sum(p.numel() for p in backbone.parameters()) - backbone.get_input_embeddings().weight.numel()
    with torch.no_grad():
        encoder._compute_table()  # warm-up (and model load)
        start = time.perf_counter()
        encoder._compute_table()
        seconds = time.perf_counter() - start
    real = int(lengths.sum())
    return {"item_llm": item_llm, "items": len(texts) - 1, "seconds": round(seconds, 3),
            "items_per_second": round((len(texts) - 1) / seconds, 1), "tokens_per_second": round(real / seconds, 1),
            "padding_share": round(1 - real / computed, 4), "non_embedding_params": params,
            "achieved_gflops": round(2 * params * computed / seconds / 1e9, 2)}


def training_steps(dataset: str) -> dict:
    from benchmarks.epoch_time import time_epochs

    out = {}
    for model in ("HLLM", "SASRec"):
        result = time_epochs(model, dataset, 1, {"train_neg_sample_args": None} if model == "SASRec" else {})
        steps = -(-result["train_rows_per_epoch"] // (16 if model == "HLLM" else 2048))
        out[model] = {"epoch_seconds": round(result["epoch_seconds"][0], 2), "rows": result["train_rows_per_epoch"],
                      "steps": steps, "seconds_per_step": round(result["epoch_seconds"][0] / steps, 4)}
    out["epoch_ratio_hllm_over_sasrec"] = round(out["HLLM"]["epoch_seconds"] / out["SASRec"]["epoch_seconds"], 3)
    return out


def generation(threads: int | None) -> dict:
    from recbole_hllm.chat.backend import ChatRequest
    from recbole_hllm.chat.local import LocalChatBackend

    backend = LocalChatBackend("smollm2", threads=threads)
    requests = [ChatRequest([{"role": "user", "content": f"Write a short title for product number {i}."}],
                            max_tokens=32) for i in range(16)]
    original = backend.model.generate
    backend.model.generate = lambda **kw: original(min_new_tokens=kw["max_new_tokens"], **kw)  # equal work
    out = {}
    for batch in (1, 8):
        backend.batch_size = batch
        start = time.perf_counter()
        replies = backend.chat(requests)
        seconds = time.perf_counter() - start
        tokens = sum(r.completion_tokens for r in replies)
        out[f"batch{batch}"] = {"seconds": round(seconds, 2), "tokens": tokens,
                                "tokens_per_second": round(tokens / seconds, 2)}
    out["speedup"] = round(out["batch8"]["tokens_per_second"] / out["batch1"]["tokens_per_second"], 2)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--item-llm", default="minilm")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-train", action="store_true", help="skip the (minutes-long) epoch timing")
    parser.add_argument("--out-dir", default=str(ROOT / "results"))
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config would read our flags

    import recbole_hllm  # noqa: F401

    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"dataset": args.dataset, "threads": torch.get_num_threads(),
              "matmul_gflops": round(matmul_gflops(), 2),
              "item_embedding": item_embedding(args.dataset, args.item_llm, {})}
    result["item_embedding"]["share_of_matmul"] = round(
        result["item_embedding"]["achieved_gflops"] / result["matmul_gflops"], 3)
    if not args.skip_train:
        result["training"] = training_steps(args.dataset)
    result["generation"] = generation(args.threads)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"throughput-{args.dataset}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
