"""Does U carry the user's dominant interest? A linear probe on a trained checkpoint.

    python -m benchmarks.u_probe --checkpoint saved/HLLMCreator-....pth

Label: the user's dominant facet, read from the first phrase of the text profile
("Health-minded: ...", 10 classes). Features: U of each test user (history up to,
not including, the held-out ad), against two references: the mean of the history's
item embeddings (what the user LLM starts from) and the majority class. 5-fold
cross-validated accuracy of a logistic regression (scikit-learn). If U scores well
but generation does not follow it, the creative LLM is not reading the soft token;
if U scores poorly, the user side is the bottleneck. Writes results/u_probe.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", default="results/u_probe.json")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from recbole_hllm.inference.generate import load_creator

    _, model, test = load_creator(args.checkpoint)
    profiles = dict(zip(test.creative.users, test.creative.profiles))
    feat = test.inter_feat
    users = feat[test.uid_field].tolist()
    keep = [r for r, u in enumerate(users) if profiles.get(u)]
    labels = np.array([profiles[users[r]].split(":", 1)[0] for r in keep])
    seq, seq_len = feat[model.ITEM_SEQ][keep].to(model.device), feat[model.ITEM_SEQ_LEN][keep].to(model.device)
    with torch.no_grad():
        user_vecs = torch.cat([model.user_embedding(seq[i : i + 64], seq_len[i : i + 64])
                               for i in range(0, len(keep), 64)]).float().cpu().numpy()
        item_vecs = model.item_vectors(seq).float()  # [N, L, H]
        mask = (torch.arange(seq.shape[1], device=seq.device)[None] < seq_len[:, None]).float()[..., None]
        history_mean = ((item_vecs * mask).sum(1) / mask.sum(1)).cpu().numpy()

    def probe(x) -> float:
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))
        return round(float(cross_val_score(classifier, x, labels, cv=5).mean()), 4)

    report = {"checkpoint": args.checkpoint, "users": len(keep), "classes": len(set(labels)),
              "majority_class": round(Counter(labels).most_common(1)[0][1] / len(labels), 4),
              "history_mean_item_embedding": probe(history_mean), "U": probe(user_vecs)}
    print(json.dumps(report, indent=2))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
