"""How much does the creative LLM read U? Likelihoods, not greedy titles.

    python -m benchmarks.u_nll --checkpoint saved/HLLMCreator-....pth [--limit 300]

For the same test pairs, the reference titles' mean token negative log-likelihood
(nats) is computed with each user's own U as the soft token, with another test
user's U, and, where the data have profiles, the same for the reconstruction task
(the user's text profile written from U through its own projector). Greedy decoding
hides small shifts in probability; a likelihood gap does not: own-U NLL below
shuffled-U NLL means the soft token carries information the creative LLM uses. The
title tokens that depend on the user are few (the selling-point phrase), so the
gap is also given on the reference tokens that are not in the ad's original title.
Prints a markdown table and writes results/u_nll.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F


def token_nll(model, before, soft, after, targets) -> list[torch.Tensor]:
    """Per-row NLL of each target token ``[len(target)]`` (no reduction)."""
    creative = model.creative
    embeds, mask, labels = creative._embed_rows(before, soft, after, targets, left_pad=False)
    decoder, lm_head = creative._base()
    hidden = decoder(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
    logits = lm_head(hidden[:, :-1]).float()
    nll = F.cross_entropy(logits.transpose(1, 2), labels[:, 1:].clamp(min=0), reduction="none")  # [B, T-1]
    keep = labels[:, 1:] != -100
    return [row[k] for row, k in zip(nll, keep)]


def novel_token_mask(model, target: list[int], original: str) -> torch.Tensor:
    """True for target tokens that do not occur in the ad's original title (the added phrase)."""
    original_ids = set(model.creative.token_ids([original])[0]) | set(model.creative.token_ids([" " + original])[0])
    return torch.tensor([t not in original_ids for t in target])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--limit", type=int, default=300, help="test pairs to use")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/u_nll.json")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]

    from recbole_hllm.data.creative_dataset import CREATIVE_INDEX
    from recbole_hllm.inference.generate import load_creator

    config, model, test = load_creator(args.checkpoint)
    feat = test.inter_feat
    rows = torch.nonzero(feat[CREATIVE_INDEX] >= 0).flatten()[: args.limit]
    seq, seq_len = feat[model.ITEM_SEQ][rows].to(model.device), feat[model.ITEM_SEQ_LEN][rows].to(model.device)
    items = feat[model.ITEM_ID][rows].tolist()
    creative_rows = feat[CREATIVE_INDEX][rows].tolist()
    originals = model.original_titles or [""] * (max(items) + 1)
    totals = {}

    def add(name, values, mask=None):
        for v, m in zip(values, mask or [None] * len(values)):
            v = v[m] if m is not None else v
            total, count = totals.get(name, (0.0, 0))
            totals[name] = (total + float(v.sum()), count + len(v))

    perm = torch.randperm(len(rows), generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        user_vec = torch.cat([model.user_embedding(seq[i : i + 64], seq_len[i : i + 64])
                              for i in range(0, len(rows), 64)])
        shuffled = user_vec[perm]
        for start in range(0, len(rows), args.batch_size):
            part = slice(start, start + args.batch_size)
            its, crs = items[part], creative_rows[part]
            before, after = model._prompt_parts(model.template, its)
            targets = model.creative.target_ids([model.creative_titles[c] for c in crs])
            novel = [novel_token_mask(model, t, originals[i]) for t, i in zip(targets, its)]
            for name, vecs in (("own U", user_vec[part]), ("shuffled U", shuffled[part])):
                soft = model.user_to_creative(vecs) if model.use_user_embedding else None
                nll = token_nll(model, before, soft, after, targets)
                add(f"title | {name}", nll)
                add(f"title, added words | {name}", nll, novel)
            profiles = [model.creative_profiles[c] for c in crs]
            if all(profiles) and model.loss_weights.get("recon"):
                b_text, a_text = model.profile_template.split()
                b = model.creative.token_ids([b_text] * len(crs))
                a = model.creative.token_ids([a_text] * len(crs))
                targets = model.creative.target_ids(profiles)
                for name, vecs in (("own U", user_vec[part]), ("shuffled U", shuffled[part])):
                    add(f"profile | {name}", token_nll(model, b, model.user_to_profile(vecs), a, targets))
            print(f"{min(start + args.batch_size, len(rows))}/{len(rows)} pairs", file=sys.stderr, flush=True)
    report = {name: {"nll": round(total / max(count, 1), 4), "tokens": count} for name, (total, count) in totals.items()}
    print("| target, soft token | mean NLL (nats/token) | tokens |\n|---|---|---|")
    for name, row in report.items():
        print(f"| {name} | {row['nll']} | {row['tokens']} |")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"checkpoint": os.path.basename(args.checkpoint), "pairs": len(rows),
                   "use_user_embedding": model.use_user_embedding, **report}, f, indent=2)


if __name__ == "__main__":
    main()
