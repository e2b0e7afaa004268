"""Greedy decoding that drops ended rows from the batch against transformers' ``generate``.

    python -m benchmarks.drop_finished_rows --checkpoint saved/HLLMCreator-<time>.pth [--pairs 512] [--repeats 2]

Writes the titles of the first ``--pairs`` test pairs of the checkpoint with
``generation_drop_finished_rows`` on and off (``backbones/greedy.py``), alternating,
``--repeats`` times each, in one process, with the checkpoint's own decoding settings
(guidance on U included), and prints wall times, the ratio of the best times and
whether both wrote the same titles. Writes ``drop_finished_rows.json`` to ``--out-dir``.
"""
from __future__ import annotations

from benchmarks.alternate import ab_arguments, alternate, comparison, load_pairs, report


def main(argv=None) -> int:
    args = ab_arguments(__doc__.split("\n\n")[0], pairs=512).parse_args(argv)
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
    report(result, args.out_dir, "drop_finished_rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
