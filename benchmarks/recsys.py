"""HLLM against RecBole's sequential recommenders: one command, one protocol, costs beside scores.

    python -m benchmarks.recsys --dataset ml-100k --models HLLM,SASRec,BERT4Rec,GRU4Rec,NARM,Caser,FPMC \\
        --seeds 1,2,3 [--epochs 20] [--stopping-step 3] [--data-path DIR] [--config-files a.yaml] \\
        [--set key=value ...] [--out-dir results]

Every (model, seed) is trained and evaluated by RecBole in its own subprocess (so peak
memory is that run's) with the identical split and protocol: the dataset's yaml
(leave-one-out by time, full-sort ranking, the same metrics), the same ``epochs``,
``stopping_step`` and ``valid_metric`` for every model. CE-loss models get
``train_neg_sample_args: None`` (RecBole requires it); pairwise ones (FPMC) keep one
sampled negative. Each finished run is appended to ``<out-dir>/recsys-<dataset>.jsonl``
with package versions, the git commit and a hash of its final config; a rerun skips
(model, seed, config hash) already there. The summary ``recsys-<dataset>.md`` gives
mean +- std over seeds, and ``recsys-<dataset>.png`` plots NDCG@10 against training
time (needs matplotlib: ``pip install -e .[bench]``). HLLMCreator runs like the others
(``--dataset ads-synth --models HLLMCreator,HLLM,SASRec``) and also records its
``generation_metrics`` (ROUGE-L, interest-hit, ... of the test titles).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["recall@10", "recall@20", "ndcg@10", "ndcg@20", "mrr@10", "mrr@20"]
PAIRWISE = {"FPMC", "BPR", "NPE", "TransRec", "SHAN", "HRM"}  # RecBole models trained with sampled negatives


def run_one(model_name: str, dataset: str, seed: int, overrides: dict) -> dict:
    """Train and test one model in this process; returns the result row."""
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    import recbole_hllm  # noqa: F401  (registration, RecBole fixes)

    settings = {"seed": seed, "show_progress": False, "state": "WARNING", "reproducibility": True, **overrides}
    if model_name not in PAIRWISE:
        settings.setdefault("train_neg_sample_args", None)
    argv, sys.argv = sys.argv, sys.argv[:1]  # RecBole's Config would read our flags
    try:
        config = Config(model=model_name, dataset=dataset, config_dict=settings)
    finally:
        sys.argv = argv
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    epoch_seconds, best_epoch = _instrument(trainer)
    start = time.perf_counter()
    trainer.fit(train, valid, saved=True, show_progress=False)
    train_seconds = time.perf_counter() - start
    test_result = trainer.evaluate(test, load_best_model=True, show_progress=False)
    return {
        "model": model_name, "dataset": dataset, "seed": seed,
        **{m: round(float(test_result[m]), 6) for m in [*METRICS, *generation_metrics()] if m in test_result},
        "best_epoch": best_epoch[-1] if best_epoch else None, "epochs_run": len(epoch_seconds),
        "epoch_seconds": round(statistics.mean(epoch_seconds), 3) if epoch_seconds else None,
        "train_seconds": round(train_seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "config_hash": config_hash(config), "threads": torch.get_num_threads(),
    }


def generation_metrics() -> list[str]:
    """Every generation metric name the package knows (HLLMCreator adds those it computed)."""
    from recbole_hllm.evaluation import GENERATION_METRICS

    return list(GENERATION_METRICS)


def _instrument(trainer):
    """Record each training epoch's time and the epochs at which a best model was saved."""
    epoch_seconds, best_epoch = [], []
    train_epoch, save = trainer._train_epoch, trainer._save_checkpoint

    def timed_train_epoch(*args, **kwargs):
        start = time.perf_counter()
        try:
            return train_epoch(*args, **kwargs)
        finally:
            epoch_seconds.append(time.perf_counter() - start)

    def recorded_save(epoch, *args, **kwargs):
        best_epoch.append(int(epoch))
        return save(epoch, *args, **kwargs)

    trainer._train_epoch, trainer._save_checkpoint = timed_train_epoch, recorded_save
    return epoch_seconds, best_epoch


def config_hash(config) -> str:
    """Hash of the settings that decide a result (paths and devices excluded)."""
    volatile = {"data_path", "checkpoint_dir", "device", "gpu_id", "local_rank", "log_wandb", "show_progress",
                "state"}
    values = {k: v for k, v in config.final_config_dict.items() if k not in volatile}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]


def provenance() -> dict:
    from importlib.metadata import version

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    packages = {p: version(p) for p in ("torch", "recbole", "transformers", "peft", "numpy", "pandas")}
    return {"git_commit": (commit.stdout.strip() or "unknown") + ("-dirty" if dirty else ""),
            "python": platform.python_version(), "packages": packages}


def done_runs(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash: that run is redone
    return rows


def launch(model: str, dataset: str, seed: int, overrides: dict, timeout: float) -> dict:
    """``run_one`` in a fresh subprocess (isolated memory and RNG); raises with its stderr."""
    payload = json.dumps({"model": model, "dataset": dataset, "seed": seed, "overrides": overrides})
    out = subprocess.run([sys.executable, "-m", "benchmarks.recsys", "--run-one", payload], capture_output=True,
                         text=True, cwd=ROOT, timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise RuntimeError(f"{model} seed {seed} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarise(rows: list[dict], dataset: str) -> str:
    by_model: dict[str, list[dict]] = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    generation = [m for m in generation_metrics() if any(m in r for r in rows)]  # HLLMCreator's titles
    cols = METRICS + generation + ["best_epoch", "epoch_seconds", "train_seconds", "peak_rss_mb"]
    lines = [f"RecBole full-sort evaluation on `{dataset}`, leave-one-out by time; mean +- std over seeds.\n",
             "| model | seeds | " + " | ".join(cols) + " | trainable params |", "|---" * (len(cols) + 3) + "|"]
    for model, runs in by_model.items():
        cells = []
        for col in cols:
            values = [r[col] for r in runs if r.get(col) is not None]
            if not values:
                cells.append("-")
            elif len(values) == 1:
                cells.append(f"{values[0]:.4g}")
            else:
                cells.append(f"{statistics.mean(values):.4g} +- {statistics.stdev(values):.2g}")
        lines.append(f"| {model} | {len(runs)} | " + " | ".join(cells) + f" | {runs[0]['trainable_params']:,} |")
    ratio = _ndcg_ratio(by_model)
    if ratio:
        lines += ["", f"HLLM NDCG@10 / SASRec NDCG@10 = {ratio:.3f}"]
    return "\n".join(lines) + "\n"


def _ndcg_ratio(by_model: dict) -> float | None:
    if "HLLM" not in by_model or "SASRec" not in by_model:
        return None
    mean = lambda m: statistics.mean(r["ndcg@10"] for r in by_model[m])  # noqa: E731
    return mean("HLLM") / mean("SASRec") if mean("SASRec") else None


def plot(rows: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for model in dict.fromkeys(r["model"] for r in rows):
        runs = [r for r in rows if r["model"] == model]
        ax.scatter([r["train_seconds"] for r in runs], [r["ndcg@10"] for r in runs], label=model)
    ax.set_xscale("log")
    ax.set_xlabel("training time (s, log)")
    ax.set_ylabel("test NDCG@10")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--models", default="HLLM,SASRec,BERT4Rec,GRU4Rec,NARM,Caser,FPMC")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--stopping-step", type=int, default=3)
    p.add_argument("--data-path", help="folder holding <dataset>/ (any RecBole atomic dataset)")
    p.add_argument("--config-files", nargs="*", default=[])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="setting for every model")
    p.add_argument("--timeout", type=float, default=6 * 3600, help="seconds per run")
    p.add_argument("--out-dir", default=str(ROOT / "results"))
    p.add_argument("--run-one", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    import yaml

    args = parse_args(argv)
    if args.run_one:
        job = json.loads(args.run_one)
        print(json.dumps(run_one(job["model"], job["dataset"], job["seed"], job["overrides"])))
        return 0
    overrides = {"epochs": args.epochs, "stopping_step": args.stopping_step}
    for path in args.config_files:
        overrides.update(yaml.safe_load(Path(path).read_text()) or {})
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    if args.data_path:  # a dataset of your own: load every column (time field included) unless told
        overrides["data_path"] = args.data_path
        overrides.setdefault("load_col", None)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / f"recsys-{args.dataset}.jsonl"
    info = provenance()
    for model in args.models.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            with tempfile.TemporaryDirectory() as tmp:  # checkpoints (HLLMCreator: GBs) do not pile up
                settings = {**overrides, "checkpoint_dir": tmp}
                if any(r["model"] == model and r["seed"] == seed and r.get("settings") == overrides
                       for r in done_runs(log)):
                    print(f"skip {model} seed {seed}: already in {log}")
                    continue
                print(f"run {model} seed {seed} ...", flush=True)
                row = {**launch(model, args.dataset, seed, settings, args.timeout), **info, "settings": overrides}
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"  NDCG@10 {row.get('ndcg@10')}  train {row['train_seconds']} s  peak {row['peak_rss_mb']} MB")
    rows = [r for r in done_runs(log) if r["model"] in args.models.split(",")]
    table = summarise(rows, args.dataset)
    (out_dir / f"recsys-{args.dataset}.md").write_text(table)
    plotted = plot(rows, out_dir / f"recsys-{args.dataset}.png")
    print(table + ("" if plotted else "(no plot: matplotlib not installed)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
