"""Generation with the LoRA deltas merged into the weights against unmerged LoRA layers.

    python -m benchmarks.lora_merge --checkpoint saved/HLLMCreator-<time>.pth [--pairs 256] [--repeats 2]

Writes the titles of the first ``--pairs`` test pairs of the checkpoint with
``generation_merge_lora`` on and off, alternating, ``--repeats`` times each, in one
process, and prints wall times, the ratio of the best times, whether both settings
wrote the same titles, and whether the weights after the merged runs are bit for bit
the weights before. Writes ``lora_merge.json`` to ``--out-dir``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", default=str(ROOT / "results"))
    args = parser.parse_args(argv)

    import torch

    from benchmarks.alternate import alternate, comparison, load_pairs
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
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lora_merge.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
