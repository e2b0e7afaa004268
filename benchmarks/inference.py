"""Cluster-and-prune inference: cost against quality, all measured in one run.

    python benchmarks/inference.py --checkpoint saved/HLLMCreator-....pth \
        [--ads 10] [--clusters 8,32,128] [--top-m 5] [--out-dir results]

Scenario: every test user gets a title for each of the ``--ads`` ads (the ads with the
most ground-truth pairs), the product setting where clustering pays. Quality is
measured on the pairs that have a reference title and a ground-truth facet. The
per-user reference is generated for those evaluation pairs only (generating all
N x A pairs per user is what clustering avoids); its cost for all pairs is
extrapolated from its measured rate and marked as such. Each clustered setting
generates for all N x A pairs. Pruning: the ``--top-m`` best-matching ads per cluster
are generated, the rest keep the original title; "top-pair recall" is the share of
each user's own top-``--top-m`` pairs (per-user matching scores) that were generated.

Writes ``inference.md``, ``inference.json`` and ``inference.png`` to ``--out-dir``.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def evaluation_pairs(model, dataset, truth, histories, n_ads: int):
    """(ads, eval pairs, reference titles): the ``n_ads`` ads with most truth pairs among test users."""
    creative = dataset.creative
    references = {(int(u), int(i)): model.creative_titles[r]
                  for r, (u, i) in enumerate(zip(creative.users, creative.items))}
    token = lambda field, i: str(dataset.id2token(field, i))
    judged = [(u, i) for (u, i) in references if u in histories and
              (token(dataset.uid_field, u), token(dataset.iid_field, i)) in truth.pair_facet]
    counts = Counter(i for _, i in judged)
    ads = sorted(i for i, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n_ads])
    pairs = sorted(p for p in judged if p[1] in set(ads))
    return ads, pairs, references


def score_rows(rows, pairs, references, dataset, truth, original_titles):
    from recbole_hllm.evaluation.generation import (
        TitleRecord,
        attach_truth,
        score_titles,
    )

    by_pair = {(r["user"], r["item"]): r["title"] for r in rows}
    records = [TitleRecord(str(dataset.id2token(dataset.uid_field, u)), str(dataset.id2token(dataset.iid_field, i)),
                           by_pair[(u, i)], references[(u, i)], original_titles[i]) for u, i in pairs]
    attach_truth(records, truth)
    return score_titles(records, ["rouge-l", "interest_hit", "off_facet"], truth)


def top_pair_recall(model, result, ads, top_m: int) -> float:
    """Share of each user's top-``top_m`` ads (own matching scores) that ``result`` generated."""
    from recbole_hllm.inference.clustered import pair_scores

    scores = pair_scores(model, result.user_vecs, ads)
    generated = {(r["user"], r["item"]) for r in result.rows if not r["pruned"]}
    top = np.argsort(-scores, axis=1, kind="stable")[:, :top_m]
    hits = [(result.users[row], ads[col]) in generated for row in range(len(result.users)) for col in top[row]]
    return float(np.mean(hits))


def run(args) -> dict:
    from recbole_hllm.evaluation.generation import GroundTruth
    from recbole_hllm.inference.clustered import InferenceSettings, personalise
    from recbole_hllm.inference.generate import load_creator, user_histories
    from recbole_hllm.inference.pruning import PruneRule

    config, model, dataset = load_creator(args.checkpoint)
    truth = GroundTruth.load(config["data_path"], config["dataset"])
    if truth is None:
        sys.exit(f"{config['dataset']} has no ground truth (.truth/.sellingpoint/.facet files)")
    max_len = config["MAX_ITEM_LIST_LENGTH"]
    full = user_histories(dataset, max_len)
    histories = {u: h[:-1] for u, h in full.items()}  # the held-out ad is not history
    ads, eval_pairs, references = evaluation_pairs(model, dataset, truth, histories, args.ads)
    users = sorted(histories)
    all_pairs = [(u, i) for u in users for i in ads]
    originals = model.original_titles
    settings = dict(batch_size=args.batch_size, seed=args.seed, show_progress=not args.no_progress)

    def measure(name, pairs, **kw):
        result = personalise(model, histories, pairs, InferenceSettings(**settings, **kw), max_len)
        quality = score_rows(result.rows, eval_pairs, references, dataset, truth, originals)
        row = {"setting": name, "pairs": len(pairs), "generations": result.generations,
               "new_tokens": result.new_tokens, "seconds": round(result.seconds, 1), **quality}
        print(json.dumps(row), flush=True)
        return row, result

    per_user, _ = measure("per-user (evaluation pairs)", eval_pairs, clusters=0)
    rate = per_user["seconds"] / max(per_user["generations"], 1)
    table = [per_user, {"setting": "per-user (all pairs, extrapolated)", "pairs": len(all_pairs),
                        "generations": len(all_pairs), "seconds": round(rate * len(all_pairs), 1),
                        "extrapolated": True}]
    for k in args.clusters:
        table.append(measure(f"clusters K={k}", all_pairs, clusters=k)[0])
    row, pruned = measure(f"clusters K={args.prune_k} + top-{args.top_m}", all_pairs, clusters=args.prune_k,
                          prune=PruneRule(top_m=args.top_m))
    row["top_pair_recall"] = round(top_pair_recall(model, pruned, ads, args.top_m), 4)
    table.append(row)
    reference_s = table[1]["seconds"]
    for row in table[1:]:  # cost is compared on all pairs; the first row covers the evaluation pairs only
        row["speedup_vs_per_user"] = round(reference_s / row["seconds"], 1) if row["seconds"] else None
    for row in table:
        for metric in ("rouge-l", "interest_hit"):
            if metric in row and per_user.get(metric):
                row[f"{metric}_vs_per_user"] = round(row[metric] / per_user[metric], 3)
    return {"checkpoint": args.checkpoint, "users": len(users), "ads": len(ads), "evaluation_pairs": len(eval_pairs),
            "table": table}


def write_reports(report: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "inference.json").write_text(json.dumps(report, indent=2) + "\n")
    cols = ["setting", "generations", "new_tokens", "seconds", "speedup_vs_per_user", "rouge-l", "interest_hit",
            "interest_hit_vs_per_user", "off_facet", "top_pair_recall"]
    lines = [f"{report['users']} users x {report['ads']} ads; quality on {report['evaluation_pairs']} "
             "ground-truth pairs; per-user cost for all pairs extrapolated from its measured rate.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in report["table"]:
        lines.append("| " + " | ".join("" if row.get(c) is None else str(row[c]) for c in cols) + " |")
    (out_dir / "inference.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e .[bench]): no plot written", file=sys.stderr)
        return
    measured = [r for r in report["table"] if not r.get("extrapolated")]
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in measured:
        ax.scatter(row["generations"], row["interest_hit"])
        ax.annotate(row["setting"], (row["generations"], row["interest_hit"]), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("generations (log)")
    ax.set_ylabel("interest-hit rate")
    ax.set_title("Cluster-and-prune: quality vs cost")
    fig.tight_layout()
    fig.savefig(out_dir / "inference.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--ads", type=int, default=10)
    parser.add_argument("--clusters", default="8,32,128")
    parser.add_argument("--prune-k", type=int, default=32)
    parser.add_argument("--top-m", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=str(ROOT / "results"))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    args.clusters = [int(k) for k in args.clusters.split(",") if k]
    write_reports(run(args), Path(args.out_dir))


if __name__ == "__main__":
    main()
