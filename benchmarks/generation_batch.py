"""HLLMCreator's title generation at several batch sizes, one run (picks generation_batch_size).

    python -m benchmarks.generation_batch [--checkpoint saved/HLLMCreator-....pth] [--pairs 256] [--sizes 32,64,128]

Generates titles for the first ``--pairs`` test (user, ad) pairs of the default dataset
(ads-synth) with ``HLLMCreator.generate_titles`` at each batch size, back to back in one
process: an untrained model (default) or a checkpoint. Greedy decoding gives the same
titles at every size, so only time differs. Writes results/generation_batch.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def load(checkpoint: str | None, threads: int):
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_hllm.model.hllm_creator import HLLMCreator

    if checkpoint:
        from recbole_hllm.inference.generate import load_creator

        _, model, test = load_creator(checkpoint)
        return model.eval(), test
    config = Config(model="HLLMCreator", dataset="ads-synth", config_dict={"state": "WARNING", "torch_threads": threads})
    init_seed(config["seed"], True)
    train, _, test = data_preparation(config, create_dataset(config))
    return HLLMCreator(config, train._dataset).eval(), test._dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--sizes", default="32,64,128")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "results" / "generation_batch.json"))
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config reads flags from here
    import recbole_hllm  # noqa: F401
    from recbole_hllm.data.creative_dataset import CREATIVE_INDEX

    model, test = load(args.checkpoint, args.threads)
    feat = test.inter_feat
    rows = torch.nonzero(feat[CREATIVE_INDEX] >= 0).flatten()[: args.pairs]
    inputs = [feat[key][rows].to(model.device) for key in (model.ITEM_SEQ, model.ITEM_SEQ_LEN, model.ITEM_ID)]
    runs, reference = [], None
    for size in [int(s) for s in args.sizes.split(",")]:
        start = time.perf_counter()
        titles, new_tokens = model.generate_titles(*inputs, batch_size=size)
        seconds = time.perf_counter() - start
        reference = reference or titles
        runs.append({"batch_size": size, "seconds": round(seconds, 1), "new_tokens": new_tokens,
                     "tokens_per_second": round(new_tokens / seconds, 1), "same_titles": titles == reference})
        print(json.dumps(runs[-1]), flush=True)
    report = {"checkpoint": args.checkpoint and Path(args.checkpoint).name, "pairs": len(rows),
              "threads": torch.get_num_threads(), "runs": runs}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
