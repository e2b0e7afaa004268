"""Shared by the generation A/B scripts (``prefix_share``, ``lora_merge``,
``drop_finished_rows``): load a checkpoint's first test pairs, then write their titles
with a setting on and off, alternating in one process, so the two timings share the
machine's state."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]


def ab_arguments(description: str, pairs: int) -> argparse.ArgumentParser:
    """The options every A/B script takes (``--pairs`` defaults to ``pairs``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--pairs", type=int, default=pairs)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", default=str(ROOT / "results"))
    return parser


def report(result: dict, out_dir: str, name: str) -> None:
    """Write ``<out_dir>/<name>.json`` and print it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def load_pairs(checkpoint: str, pairs: int, threads: int):
    """(model, (item_seq, seq_len, item_ids) of the first ``pairs`` test pairs)."""
    import torch

    from recbole_hllm.inference.generate import load_creator

    torch.set_num_threads(threads)
    _, model, dataset = load_creator(checkpoint)
    feat = dataset.inter_feat
    rows = slice(0, pairs)
    return model, (feat[model.ITEM_SEQ][rows], feat[model.ITEM_SEQ_LEN][rows], feat[model.ITEM_ID][rows])


def alternate(model, inputs, repeats: int, switch: Callable[[bool], None]) -> tuple[dict, dict]:
    """``repeats`` rounds of (on, off): ``switch(flag)`` sets the setting, then the titles are
    generated and timed. Returns ({flag: [seconds]}, {flag: titles of the last round})."""
    times, titles = {True: [], False: []}, {}
    for _ in range(repeats):
        for flag in (True, False):
            switch(flag)
            start = time.perf_counter()
            titles[flag], _ = model.generate_titles(*inputs)
            times[flag].append(time.perf_counter() - start)
    return times, titles


def comparison(times: dict, titles: dict, on: str, off: str) -> dict:
    """The JSON fields both scripts report: seconds of each side, best-time ratio, same titles."""
    return {
        f"seconds_{on}": [round(t, 2) for t in times[True]],
        f"seconds_{off}": [round(t, 2) for t in times[False]],
        "speedup_best": round(min(times[False]) / min(times[True]), 3),
        "same_titles": titles[True] == titles[False],
        "differing_titles": sum(a != b for a, b in zip(titles[True], titles[False])),
    }
