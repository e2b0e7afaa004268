"""Cost of one HLLM training step with a trained item LLM: today's LoRA against the cheaper configs.

    python -m benchmarks.item_llm_step [--dataset ml-100k] [--steps 3] [--variants lora,top2-bf16,...]
        [--threads 2] [--out-dir results]

Each variant runs in its own subprocess (so its peak RSS is its own), builds HLLM on the
dataset with the plugin's defaults plus the variant's settings, draws the same training
batches (seed 2020) and times ``calculate_loss`` + ``backward`` + an optimizer step over
``--steps`` steps after one untimed warm-up step. It reports seconds per step, the
unique items the item LLM ran, the setup time (model build, including any lower-layer
states) and peak RSS, and the ratio of each variant's step time to the first variant's,
all from one run. ``--baseline-src DIR --baseline-variants lora,full`` also runs those
variants on the package source in DIR (e.g. a ``git worktree`` of an older commit), in the
same run, as rows named ``<variant>@<DIR's commit>``; the ratios are then to the first
baseline row. Writes ``item-llm-step-<dataset>.{json,md}`` to ``--out-dir``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LORA = {"item_llm_tuning": "lora", "item_llm_lora": {"r": 8, "lora_alpha": 16}}
VARIANTS = {
    "lora": LORA,  # the converged table's HLLM-lora-items: LoRA r 8 on all MiniLM layers, float32
    "full": {"item_llm_tuning": "full"},
    "full-ckpt": {"item_llm_tuning": "full", "item_llm_checkpointing": True},
    "lora-bf16": {**LORA, "item_llm_dtype": "bfloat16"},
    "top2-fp32": {"item_llm_tuning": "full", "item_llm_trained_layers": 2},
    "top2-bf16": {"item_llm_tuning": "full", "item_llm_trained_layers": 2, "item_llm_dtype": "bfloat16"},
    "top1-bf16": {"item_llm_tuning": "full", "item_llm_trained_layers": 1, "item_llm_dtype": "bfloat16"},
    "top1-fp32": {"item_llm_tuning": "full", "item_llm_trained_layers": 1},  # HLLM-trained-items where bf16 is emulated
    # and the user LLM in bf16 compute too (its weights stay float32): the HLLM-trained-items variant
    "top1-bf16-user-bf16": {"item_llm_tuning": "full", "item_llm_trained_layers": 1, "item_llm_dtype": "bfloat16",
                            "user_llm_dtype": "bfloat16"},
    "top1-bf16-user-bf16-neg256": {"item_llm_tuning": "full", "item_llm_trained_layers": 1,
                                   "item_llm_dtype": "bfloat16", "user_llm_dtype": "bfloat16", "num_negatives": 256},
}


def run_variant(dataset: str, settings: dict, steps: int, threads: int) -> dict:
    """One variant in this process: the timing row."""
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    import recbole_hllm  # noqa: F401
    from recbole_hllm.model.hllm import HLLM

    torch.set_num_threads(threads)
    argv, sys.argv = sys.argv, sys.argv[:1]
    config = Config(model="HLLM", dataset=dataset, config_dict={"seed": 2020, "state": "WARNING",
                                                               "show_progress": False, **settings})
    sys.argv = argv
    init_seed(config["seed"], True)
    train, _, _ = data_preparation(config, create_dataset(config))
    start = time.perf_counter()
    model = HLLM(config, train._dataset)
    setup_seconds = time.perf_counter() - start
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batches = iter(train)
    times, items = [], []
    for step in range(steps + 1):
        batch = next(batches)
        encoder = model.item_encoder
        before = getattr(encoder, "items_encoded", 0)  # older sources do not count
        start = time.perf_counter()
        loss = model.calculate_loss(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step:  # the first step is a warm-up
            times.append(time.perf_counter() - start)
            items.append(getattr(encoder, "items_encoded", 0) - before)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"settings": settings, "step_seconds": sorted(times)[len(times) // 2], "steps": steps,
            "items_per_step": sum(items) / len(items), "setup_seconds": round(setup_seconds, 2),
            "trainable_params": trainable, "loss": float(loss),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--variants", default="lora,top2-bf16,top1-bf16")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-dir", default="results")
    p.add_argument("--baseline-src", help="an older package source (a git worktree) to run --baseline-variants on")
    p.add_argument("--baseline-variants", default="lora")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_variant(args.dataset, json.loads(args.one), args.steps, args.threads)))
        return 0
    jobs = []  # (row name, variant, package source folder)
    if args.baseline_src:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=args.baseline_src).stdout.strip() or Path(args.baseline_src).name
        jobs += [(f"{name}@{commit}", name, Path(args.baseline_src).resolve())
                 for name in args.baseline_variants.split(",")]
    jobs += [(name, name, ROOT) for name in args.variants.split(",")]
    rows = {}
    for row, name, src in jobs:
        env = {**os.environ, "PYTHONPATH": str(src)}  # the variant's package source comes first
        out = subprocess.run([sys.executable, __file__, "--dataset", args.dataset,
                              "--steps", str(args.steps), "--threads", str(args.threads),
                              "--one", json.dumps(VARIANTS[name])], capture_output=True, text=True, cwd=ROOT,
                             env=env)
        if out.returncode:
            print(f"{row} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
            return 1
        rows[row] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{row}: {rows[row]['step_seconds']:.2f} s/step, {rows[row]['items_per_step']:.0f} items/step, "
              f"setup {rows[row]['setup_seconds']} s, peak {rows[row]['peak_rss_mb']} MB", flush=True)
    base = next(iter(rows))
    lines = [f"HLLM training step on {args.dataset}, {args.threads} threads, median of {args.steps} steps "
             "(one run, each variant in its own process)\n",
             "| variant | settings | s/step | vs " + base + " | items/step | trainable params | setup s | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        ratio = rows[base]["step_seconds"] / r["step_seconds"]
        lines.append(f"| {name} | `{json.dumps(r['settings'])}` | {r['step_seconds']:.2f} | {ratio:.1f}x cheaper | "
                     f"{r['items_per_step']:.0f} | {r['trainable_params']:,} | {r['setup_seconds']} | "
                     f"{r['peak_rss_mb']} |")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"item-llm-step-{args.dataset}.json").write_text(json.dumps(rows, indent=1))
    (out_dir / f"item-llm-step-{args.dataset}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
