"""Greedy decoding that drops ended rows from the batch against transformers' ``generate``.

    python -m benchmarks.drop_finished_rows --checkpoint saved/HLLMCreator-<time>.pth [--pairs 512] [--repeats 2]

Writes the titles of the first ``--pairs`` test pairs of the checkpoint with
``generation_drop_finished_rows`` on and off (``backbones/greedy.py``), alternating,
``--repeats`` times each, in one process, with the checkpoint's own decoding settings
(guidance on U included), and prints wall times, the ratio of the best times and
whether both wrote the same titles. Writes ``drop_finished_rows.json`` to ``--out-dir``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--pairs", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", default=str(ROOT / "results"))
    args = parser.parse_args(argv)

    from benchmarks.alternate import alternate, comparison, load_pairs

    model, inputs = load_pairs(args.checkpoint, args.pairs, args.threads)
    model.generate_titles(*(tensor[:8] for tensor in inputs))  # warm-up: the first batch pays one-off costs
    times, titles = alternate(model, inputs, args.repeats,
                              lambda drop: setattr(model.creative, "drop_finished_rows", drop))
    result = {
        "checkpoint": args.checkpoint, "pairs": args.pairs, "threads": args.threads,
        "batch_size": model.generation["batch_size"], "user_guidance": model.generation.get("user_guidance"),
        "max_new_tokens": model.generation["max_new_tokens"],
        **comparison(times, titles, "dropped", "generate"),
    }
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "drop_finished_rows.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
