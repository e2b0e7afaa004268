"""One process vs several: the same RecBole run with ``--nproc 1`` and ``--nproc N``.

    python -m benchmarks.nproc --model HLLM --dataset ml-100k --nproc 1,2 [--set epochs=5 ...]

Each setting runs in its own subprocess through ``recbole_hllm.integration.launch.run``
(RecBole's engine; gloo on CPUs), one after the other; it records wall time, the
peak resident memory of the largest process, and the test metrics. On a CPU machine
one process uses torch's default thread count and N processes share the cores, so the
comparison is at equal hardware. Writes ``results/nproc-<dataset>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_one(model: str, dataset: str, nproc: int, settings: dict) -> dict:
    import recbole_hllm  # noqa: F401
    from recbole_hllm.integration.launch import run

    start = time.perf_counter()
    result = run(model, dataset, config_dict={"show_progress": False, **settings}, nproc=nproc,
                 port=str(29500 + os.getpid() % 1000))
    seconds = time.perf_counter() - start
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return {"nproc": nproc, "wall_seconds": round(seconds, 1), "peak_rss_mb_largest_process": round(peak / 1024),
            "test_result": {k: float(v) for k, v in result["test_result"].items()},
            "best_valid_result": {k: float(v) for k, v in result["best_valid_result"].items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="HLLM")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--nproc", default="1,2")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=None)
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        job = json.loads(args.run_one)
        sys.argv = sys.argv[:1]  # RecBole's Config reads flags from here
        print(json.dumps(run_one(**job)))
        return 0
    import yaml

    settings = {}
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key] = yaml.safe_load(value)
    rows = []
    for nproc in [int(n) for n in args.nproc.split(",")]:
        payload = json.dumps({"model": args.model, "dataset": args.dataset, "nproc": nproc, "settings": settings})
        with tempfile.TemporaryDirectory() as tmp:  # RecBole's log/ and saved/ (checkpoints) go here
            out = subprocess.run([sys.executable, "-m", "benchmarks.nproc", "--run-one", payload], capture_output=True,
                                 text=True, cwd=tmp, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            return 1
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["wall_seconds"]
    for row in rows:
        row["speedup_vs_first"] = round(base / row["wall_seconds"], 3)
    report = {"model": args.model, "dataset": args.dataset, "settings": settings, "cpus": os.cpu_count(), "runs": rows}
    path = Path(args.out or ROOT / "results" / f"nproc-{args.dataset}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print("| nproc | wall s | speedup | peak RSS MB (largest process) | test NDCG@10 | test Recall@10 |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        t = row["test_result"]
        print(f"| {row['nproc']} | {row['wall_seconds']} | {row['speedup_vs_first']} | "
              f"{row['peak_rss_mb_largest_process']} | {t.get('ndcg@10')} | {t.get('recall@10')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
