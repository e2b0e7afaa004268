"""Generation with and without the shared prompt prefix (one KV cache per batch).

    python benchmarks/prefix_share.py --checkpoint saved/HLLMCreator-<time>.pth [--pairs 64] [--repeats 2]

Generates titles for the first ``--pairs`` test pairs of the checkpoint with
``generation_share_prefix`` on and off, alternating, ``--repeats`` times each, and
prints wall times, the ratio, and whether both settings wrote the same titles.
Writes ``prefix_share.json`` to ``--out-dir``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", default=str(ROOT / "results"))
    args = parser.parse_args(argv)

    import torch

    from recbole_hllm.inference.generate import load_creator

    torch.set_num_threads(args.threads)
    config, model, dataset = load_creator(args.checkpoint)
    feat = dataset.inter_feat
    rows = slice(0, args.pairs)
    inputs = (feat[model.ITEM_SEQ][rows], feat[model.ITEM_SEQ_LEN][rows], feat[model.ITEM_ID][rows])
    prefix = model.template.split(**{slot: "" for slot in model.ad_texts})[0]
    times = {True: [], False: []}
    titles = {}
    for _ in range(args.repeats):
        for share in (True, False):
            model.creative.share_prefix = share
            start = time.perf_counter()
            titles[share], _ = model.generate_titles(*inputs)
            times[share].append(time.perf_counter() - start)
    result = {
        "checkpoint": args.checkpoint, "pairs": args.pairs, "threads": args.threads,
        "prefix_tokens": len(model.creative.token_ids([prefix])[0]), "prefix": prefix,
        "batch_size": model.generation["batch_size"],
        "seconds_shared": [round(t, 2) for t in times[True]],
        "seconds_unshared": [round(t, 2) for t in times[False]],
        "speedup_best": round(min(times[False]) / min(times[True]), 3),
        "same_titles": titles[True] == titles[False],
        "differing_titles": sum(a != b for a, b in zip(titles[True], titles[False])),
    }
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "prefix_share.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
