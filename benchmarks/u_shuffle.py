"""Does the creative LLM use U? Same checkpoint, same test pairs: titles generated with
each user's own U vs with U taken from another (random) test user.

    python -m benchmarks.u_shuffle --checkpoint saved/HLLMCreator-....pth [--limit 400]

If U carries the user's interests, the interest-hit rate should drop when U is
shuffled while ROUGE-L against the (personalised) references drops too; if nothing
changes, the creative LLM ignores the soft token. Prints a markdown table and writes
results/u_shuffle.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--limit", type=int, default=400, help="test pairs to use")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]

    from recbole_hllm.data.creative_dataset import CREATIVE_INDEX
    from recbole_hllm.evaluation.generation import (
        GroundTruth,
        TitleRecord,
        attach_truth,
        score_titles,
    )
    from recbole_hllm.inference.generate import load_creator

    config, model, test = load_creator(args.checkpoint)
    feat = test.inter_feat
    rows = torch.nonzero(feat[CREATIVE_INDEX] >= 0).flatten()[: args.limit]
    seq, seq_len = feat[model.ITEM_SEQ][rows].to(model.device), feat[model.ITEM_SEQ_LEN][rows].to(model.device)
    items = feat[model.ITEM_ID][rows].tolist()
    with torch.no_grad():
        user_vec = torch.cat([model.user_embedding(seq[i : i + 64], seq_len[i : i + 64]) for i in range(0, len(rows), 64)])
    shuffled = user_vec[torch.randperm(len(rows), generator=torch.Generator().manual_seed(args.seed))]
    truth = GroundTruth.load(config["data_path"], config["dataset"])
    users = test.id2token(test.uid_field, feat[test.uid_field][rows].numpy())
    raw_items = test.id2token(test.iid_field, feat[model.ITEM_ID][rows].numpy())
    refs = [model.creative_titles[c] for c in feat[CREATIVE_INDEX][rows].tolist()]
    report = {}
    settings = {k: v for k, v in model.generation.items() if k != "batch_size"}
    for name, vectors in (("own U", user_vec), ("shuffled U", shuffled)):
        titles = []
        for i in range(0, len(rows), model.generation["batch_size"]):
            part = slice(i, i + model.generation["batch_size"])
            titles += model.generate_from_user_vectors(vectors[part], items[part], **settings)[0]
        records = [TitleRecord(str(u), str(it), g, r) for u, it, g, r in zip(users, raw_items, titles, refs)]
        attach_truth(records, truth)
        report[name] = score_titles(records, ["rouge-l", "interest_hit", "off_facet"], truth)
    print("| U | rouge-l | interest_hit | off_facet |\n|---|---|---|---|")
    for name, scores in report.items():
        print(f"| {name} | {scores.get('rouge-l')} | {scores.get('interest_hit')} | {scores.get('off_facet')} |")
    os.makedirs("results", exist_ok=True)
    with open("results/u_shuffle.json", "w") as f:
        json.dump({"checkpoint": os.path.basename(args.checkpoint), "pairs": len(rows), **report}, f, indent=2)


if __name__ == "__main__":
    main()
