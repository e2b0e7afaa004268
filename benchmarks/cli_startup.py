"""How long each console script takes to start: ``<command> --help``, one process each.

    python -m benchmarks.cli_startup [--runs 5] [--baseline-src /path/to/older/checkout]

Every command is run ``--runs`` times (after one warm-up) as ``python -c "from <module>
import main; main(['--help'])"`` with the source tree first on ``PYTHONPATH``, so an
older checkout (``--baseline-src``, e.g. a ``git worktree`` of an earlier commit) is
timed the same way, interleaved run by run with this tree (the machine's drift hits
both alike). ``--help`` ends at argument parsing: what is measured is the import
cost a user pays before any work (and before any argument error is reported). Writes
results/cli_startup.json: per command and tree, the median and range of the wall
seconds and whether RecBole was imported.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("run_recbole", "hllm-generate", "hllm-build-creatives", "hllm-serve", "hllm-eval")


def entry_module(command: str, src: Path) -> str:
    """The module whose ``main`` is ``command`` in the checkout ``src`` (its setup.py's
    console_scripts), so a checkout from before the commands moved is timed too."""
    found = re.search(rf'"{re.escape(command)} = ([\w.]+):main"', (src / "setup.py").read_text())
    if found is None:
        raise SystemExit(f"{src / 'setup.py'} declares no console script {command!r}")
    return found.group(1)


PROBE = ("import sys, contextlib, io\n"
         "from {module} import main\n"
         "with contextlib.redirect_stdout(io.StringIO()):\n"
         "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
         "print('recbole' in sys.modules)\n")


def start_once(module: str, src: Path) -> tuple[float, bool]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    began = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], capture_output=True, text=True,
                         env=env, cwd=src, check=True)
    return time.perf_counter() - began, out.stdout.strip().endswith("True")


def summary(seconds: list[float], imported_recbole: bool) -> dict:
    return {"median_s": round(statistics.median(seconds), 3), "min_s": round(min(seconds), 3),
            "max_s": round(max(seconds), 3), "imports_recbole": imported_recbole}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--baseline-src", help="an older checkout to time the same way")
    p.add_argument("--out", default=str(ROOT / "results" / "cli_startup.json"))
    args = p.parse_args(argv)
    trees = {"this": ROOT}
    if args.baseline_src:
        trees["baseline"] = Path(args.baseline_src).resolve()
    report = {"runs": args.runs, "trees": {k: str(v) for k, v in trees.items()}, "commands": {}}
    for command in COMMANDS:
        modules = {tree: entry_module(command, src) for tree, src in trees.items()}
        times = {tree: [] for tree in trees}
        recbole = {}
        for tree, src in trees.items():
            start_once(modules[tree], src)  # warm-up: file cache, .pyc
        for _ in range(args.runs):
            for tree, src in trees.items():
                seconds, recbole[tree] = start_once(modules[tree], src)
                times[tree].append(seconds)
        row = {tree: summary(times[tree], recbole[tree]) for tree in trees}
        if "baseline" in row:
            row["baseline_over_this"] = round(row["baseline"]["median_s"] / row["this"]["median_s"], 2)
        report["commands"][command] = row
        print(command, json.dumps(row), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
