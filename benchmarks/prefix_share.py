"""Generation with and without the shared prompt prefix (one KV cache per batch).

    python benchmarks/prefix_share.py --checkpoint saved/HLLMCreator-<time>.pth [--pairs 64] [--repeats 2]

Generates titles for the first ``--pairs`` test pairs of the checkpoint with
``generation_share_prefix`` on and off, alternating, ``--repeats`` times each, and
prints wall times, the ratio, and whether both settings wrote the same titles.
Writes ``prefix_share.json`` to ``--out-dir``.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))  # run as a script: benchmarks/ is then not importable
    from benchmarks.alternate import ab_arguments, alternate, comparison, load_pairs, report

    args = ab_arguments(__doc__.split("\n\n")[0], pairs=64).parse_args(argv)

    model, inputs = load_pairs(args.checkpoint, args.pairs, args.threads)
    prefix = model.template.split(**{slot: "" for slot in model.ad_texts})[0]
    times, titles = alternate(model, inputs, args.repeats, lambda share: setattr(model.creative, "share_prefix", share))
    result = {
        "checkpoint": args.checkpoint, "pairs": args.pairs, "threads": args.threads,
        "prefix_tokens": len(model.creative.token_ids([prefix])[0]), "prefix": prefix,
        "batch_size": model.generation["batch_size"],
        **comparison(times, titles, "shared", "unshared"),
    }
    report(result, args.out_dir, "prefix_share")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
