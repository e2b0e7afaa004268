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
import sys
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

    sys.path.insert(0, str(ROOT))  # run as a script: benchmarks/ is then not importable
    from benchmarks.alternate import alternate, comparison, load_pairs

    model, inputs = load_pairs(args.checkpoint, args.pairs, args.threads)
    prefix = model.template.split(**{slot: "" for slot in model.ad_texts})[0]
    times, titles = alternate(model, inputs, args.repeats, lambda share: setattr(model.creative, "share_prefix", share))
    result = {
        "checkpoint": args.checkpoint, "pairs": args.pairs, "threads": args.threads,
        "prefix_tokens": len(model.creative.token_ids([prefix])[0]), "prefix": prefix,
        "batch_size": model.generation["batch_size"],
        **comparison(times, titles, "shared", "unshared"),
    }
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "prefix_share.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
