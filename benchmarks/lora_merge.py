"""Generation with the LoRA deltas merged into the weights against unmerged LoRA layers.

    python -m benchmarks.lora_merge --checkpoint saved/HLLMCreator-<time>.pth [--pairs 256] [--repeats 2]

Writes the titles of the first ``--pairs`` test pairs of the checkpoint with
``generation_merge_lora`` on and off, alternating, ``--repeats`` times each, in one
process, and prints wall times, the ratio of the best times, whether both settings
wrote the same titles, and whether the weights after the merged runs are bit for bit
the weights before. Writes ``lora_merge.json`` to ``--out-dir``.
"""
from __future__ import annotations

from benchmarks.alternate import ab_arguments, alternate, comparison, load_pairs, report


def main(argv=None) -> int:
    args = ab_arguments(__doc__.split("\n\n")[0], pairs=256).parse_args(argv)

    import torch
    from recbole_hllm.backbones.lora_merge import lora_layers

    model, inputs = load_pairs(args.checkpoint, args.pairs, args.threads)
    weights_before = [p.detach().clone() for p in model.creative.llm.parameters()]
    times, titles = alternate(model, inputs, args.repeats, lambda merge: setattr(model.creative, "merge_lora", merge))
    result = {
        "checkpoint": args.checkpoint, "pairs": args.pairs, "threads": args.threads,
        "lora_layers": len(lora_layers(model.creative.llm)),
        "batch_size": model.generation["batch_size"],
        **comparison(times, titles, "merged", "unmerged"),
        "weights_unchanged": all(torch.equal(a, b) for a, b in zip(weights_before, model.creative.llm.parameters())),
    }
    report(result, args.out_dir, "lora_merge")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
