"""Training-epoch time of HLLM (cached item embeddings) vs SASRec on one dataset, one run.

    python -m benchmarks.epoch_time [--dataset ml-100k] [--epochs 1] [--threads N] [--key=value ...]

Both models use the plugin's defaults for the dataset (same split, same protocol).
HLLM's frozen item-LLM table is built (or loaded from cache) before the clock starts,
as the comparison is about the training epoch. The machine is shared and noisy, so
the two are measured back to back in one process and only their ratio is quoted.
Writes results/epoch_time-<dataset>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch


def time_epochs(model_name: str, dataset: str, epochs: int, overrides: dict) -> dict:
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    config = Config(model=model_name, dataset=dataset,
                    config_dict={"show_progress": False, "state": "WARNING", **overrides})
    init_seed(config["seed"], config["reproducibility"])
    train, valid, _ = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(model_name)(config, train._dataset).to(config["device"])
    if hasattr(model, "item_encoder"):
        model.item_encoder.all_items()  # cached item embeddings, outside the clock
    trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        trainer._train_epoch(train, epoch, show_progress=False)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    result = trainer._valid_epoch(valid, show_progress=False)
    return {
        "model": model_name,
        "train_rows_per_epoch": len(train.dataset),
        "epoch_seconds": times,
        "valid_seconds": time.perf_counter() - start,
        "valid_ndcg@10": float(result[1].get("ndcg@10", float("nan"))),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args, rest = parser.parse_known_args()
    sys.argv = sys.argv[:1]  # RecBole's Config would read our flags as overrides
    overrides = {}
    for item in rest:
        key, _, value = item.lstrip("-").partition("=")
        overrides[key] = value
    if args.threads:
        torch.set_num_threads(args.threads)
    import recbole_hllm  # noqa: F401

    rows = [time_epochs(name, args.dataset, args.epochs, overrides) for name in ("HLLM", "SASRec")]
    hllm, sasrec = rows
    ratio = sum(hllm["epoch_seconds"]) / sum(sasrec["epoch_seconds"])
    report = {"dataset": args.dataset, "torch_threads": torch.get_num_threads(), "rows": rows,
              "hllm_over_sasrec_epoch_time": ratio}
    os.makedirs("results", exist_ok=True)
    with open(f"results/epoch_time-{args.dataset}.json", "w") as f:
        json.dump(report, f, indent=2)
    for row in rows:
        print(f"{row['model']:7s} rows/epoch={row['train_rows_per_epoch']:6d} "
              f"epoch={sum(row['epoch_seconds']) / len(row['epoch_seconds']):7.1f}s "
              f"valid={row['valid_seconds']:5.1f}s trainable={row['trainable_params']}")
    print(f"HLLM / SASRec epoch time: {ratio:.2f}")


if __name__ == "__main__":
    main()
