"""Host-side share of one default HLLMCreator joint training step, for one or two package sources.

    python -m benchmarks.joint_step [--steps 3] [--threads 2] [--baseline-src DIR] [--out-dir results]

Builds the default ``run_recbole --model=HLLMCreator`` model (ads-synth, the shipped yaml
defaults, seed 2020) and times joint steps (every loss on, the creative LLM training):
``calculate_loss`` + ``backward`` + an Adam step, after one untimed warm-up step. Then one
more step runs under ``torch.profiler`` and its CPU time is split into matrix products
(``aten::mm`` / ``addmm`` / ``bmm`` / attention kernels, self time) and everything else:
the host-side share is what is left of the step outside the matrix products. Tokenizer
calls made during the steps are counted and timed by wrapping the tokenizer class.

``--baseline-src DIR`` runs the same in the package source DIR (e.g. a ``git worktree`` of
an older commit) first, in the same run, each source in its own process, so the two rows
are comparable; the losses of the first step show whether both compute the same numbers.
Writes ``joint-step.{json,md}`` to ``--out-dir``.
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
MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_dot_product_flash_attention_for_cpu",
              "aten::_scaled_dot_product_flash_attention_for_cpu_backward", "aten::_scaled_dot_product_attention_math",
              "aten::_mkldnn_mm", "aten::mkldnn_linear"}


class TokenizerCalls:
    """Counts and times every call of a Hugging Face tokenizer (``__call__``)."""

    def __init__(self):
        from transformers import PreTrainedTokenizerBase

        self.calls, self.seconds, original = 0, 0.0, PreTrainedTokenizerBase.__call__

        def timed(tokenizer, *args, **kwargs):
            start = time.perf_counter()
            try:
                return original(tokenizer, *args, **kwargs)
            finally:
                self.calls += 1
                self.seconds += time.perf_counter() - start

        PreTrainedTokenizerBase.__call__ = timed


def run_source(steps: int, threads: int) -> dict:
    """The step figures for the package source on ``sys.path`` (this process)."""
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    import recbole_hllm  # noqa: F401
    from recbole_hllm.model.hllm_creator import HLLMCreator

    torch.set_num_threads(threads)
    argv, sys.argv = sys.argv, sys.argv[:1]
    config = Config(model="HLLMCreator", dataset="ads-synth", config_dict={"state": "WARNING", "show_progress": False})
    sys.argv = argv
    init_seed(config["seed"], config["reproducibility"])
    train, _, _ = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = HLLMCreator(config, train._dataset)
    model.item_encoder.all_items()  # the frozen item table, outside the clock
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    tokenizer = TokenizerCalls()
    batches = iter(train)

    def step():
        losses = model.calculate_loss(next(batches).to(model.device))
        sum(losses).backward()
        optimizer.step()
        optimizer.zero_grad()
        return [round(float(x), 6) for x in losses]

    first_losses = step()  # warm-up
    calls_before, tok_before = tokenizer.calls, tokenizer.seconds
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    tokenizer_calls = (tokenizer.calls - calls_before) / steps
    tokenizer_seconds = (tokenizer.seconds - tok_before) / steps
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        step()
        profiled_wall = time.perf_counter() - start
    self_us = {}
    for event in prof.key_averages():
        self_us[event.key] = self_us.get(event.key, 0) + event.self_cpu_time_total
    matmul = sum(us for key, us in self_us.items() if key in MATMUL_OPS) / 1e6
    top = sorted(self_us.items(), key=lambda kv: -kv[1])[:12]
    return {"step_seconds": sorted(times)[len(times) // 2], "steps": steps, "first_step_losses": first_losses,
            "losses": list(model.active_losses), "tokenizer_calls_per_step": tokenizer_calls,
            "tokenizer_seconds_per_step": round(tokenizer_seconds, 4), "profiled_step_seconds": round(profiled_wall, 3),
            "matmul_seconds": round(matmul, 3), "outside_matmul_seconds": round(profiled_wall - matmul, 3),
            "outside_matmul_share": round(1 - matmul / profiled_wall, 3),
            "top_self_cpu_ops": [(key, round(us / 1e6, 3)) for key, us in top],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-dir", default="results")
    p.add_argument("--baseline-src", help="an older package source (a git worktree) to run first")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_source(args.steps, args.threads)))
        return 0
    sources = [Path(args.baseline_src).resolve()] if args.baseline_src else []
    sources.append(ROOT)
    rows = {}
    for src in sources:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=src).stdout.strip() or src.name
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=src).stdout.strip()
        name = commit + ("+changes" if dirty else "")
        out = subprocess.run([sys.executable, __file__, "--one", "--steps", str(args.steps), "--threads",
                              str(args.threads)], capture_output=True, text=True, cwd=src,
                             env={**os.environ, "PYTHONPATH": str(src)})
        if out.returncode:
            print(f"{name} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
            return 1
        rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
        r = rows[name]
        print(f"{name}: {r['step_seconds']:.2f} s/step, outside matrix products {r['outside_matmul_seconds']} s "
              f"of a profiled {r['profiled_step_seconds']} s ({r['outside_matmul_share']:.0%}), tokenizer "
              f"{r['tokenizer_calls_per_step']:.0f} calls {r['tokenizer_seconds_per_step']} s/step", flush=True)
    lines = [f"Default HLLMCreator joint step (ads-synth, seed 2020), {args.threads} threads, median of "
             f"{args.steps} steps; one run, each source in its own process\n",
             "| source | s/step | profiled step s | matrix products s | outside them s (share) | tokenizer calls / s "
             "per step | first-step losses | peak RSS MB |", "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        losses = ", ".join(f"{n} {v}" for n, v in zip(r["losses"], r["first_step_losses"]))
        lines.append(f"| {name} | {r['step_seconds']:.2f} | {r['profiled_step_seconds']} | {r['matmul_seconds']} | "
                     f"{r['outside_matmul_seconds']} ({r['outside_matmul_share']:.0%}) | "
                     f"{r['tokenizer_calls_per_step']:.0f} / {r['tokenizer_seconds_per_step']} | {losses} | "
                     f"{r['peak_rss_mb']} |")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "joint-step.json").write_text(json.dumps(rows, indent=1))
    (out_dir / "joint-step.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
