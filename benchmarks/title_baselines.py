"""Simple baselines for personalised titles, scored like HLLMCreator on the same test pairs.

    python -m benchmarks.title_baselines --checkpoint saved/HLLMCreator-....pth \
        [--compare other-run-titles.jsonl:NAME ...] [--out results/title_baselines]

For each test (user, ad) pair with a reference title:

* ``original title``: the ad's own title;
* ``nearest neighbour (U)``: the training reference title of the same ad written for
  the training user whose U is closest (cosine) to this user's U; the original title
  when no training user has one for that ad. U is each user's embedding from their
  history up to their test item, as the checkpoint computes it;
* ``nearest neighbour (history)``: the same, with the mean item embedding of the
  history instead of U (no user LLM at all);
* the checkpoint's own titles (its ``-titles.jsonl``) and any ``--compare`` titles file
  (e.g. the no-U ablation's), read as they are.

"Training" reference titles are the creative rows that are neither a valid nor a test
target: what the model saw in training. Writes ``<out>.json`` and ``<out>.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["rouge-l", "interest_hit", "off_facet", "titles_per_ad", "self_bleu"]


def creative_targets(data) -> dict[int, int]:
    """{row of the split's inter_feat: creative row} for rows with a creative target."""
    from recbole_hllm.data.creative_dataset import CREATIVE_INDEX

    index = data.dataset.inter_feat[CREATIVE_INDEX]
    return {row: int(index[row]) for row in torch.nonzero(index >= 0).flatten().tolist()}


@torch.no_grad()
def user_vectors(model, feat, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, mean history item embedding) of every row of ``feat``, L2-normalised."""
    seq, seq_len = feat[model.ITEM_SEQ], feat[model.ITEM_SEQ_LEN]
    us, means = [], []
    for start in range(0, len(seq), batch_size):
        s = seq[start : start + batch_size].to(model.device)
        n = seq_len[start : start + batch_size].to(model.device)
        us.append(model.user_embedding(s, n).float())
        vectors = model.item_vectors(s).float()
        mask = (torch.arange(s.shape[1], device=s.device)[None, :] < n[:, None]).float()
        means.append((vectors * mask[..., None]).sum(1) / n[:, None].clamp(min=1))
    unit = lambda x: torch.nn.functional.normalize(torch.cat(x), dim=-1)  # noqa: E731
    return unit(us), unit(means)


def nearest_neighbour_titles(table, originals, test_rows, creative_rows_of, vectors, user_of_row, training_rows):
    """For each test row: the training title of its ad for the closest other user
    (``table``: the dataset's CreativeTable; ``originals``: title per internal item id)."""
    users_by_ad: dict[int, list[tuple[int, int]]] = {}
    for c in training_rows:
        users_by_ad.setdefault(table.items[c], []).append((table.users[c], c))
    titles, fell_back = [], 0
    for row in test_rows:
        c_test = creative_rows_of[row]
        ad, user = table.items[c_test], table.users[c_test]
        candidates = [(u, c) for u, c in users_by_ad.get(ad, []) if u != user and u in user_of_row]
        if not candidates:
            titles.append(originals[ad])
            fell_back += 1
            continue
        sims = torch.stack([vectors[user_of_row[u]] for u, _ in candidates]) @ vectors[row]
        titles.append(table.titles[candidates[int(sims.argmax())][1]])
    return titles, fell_back


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--compare", action="append", default=[], metavar="FILE[:NAME]")
    parser.add_argument("--out", default=str(ROOT / "results" / "title_baselines"))
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config would read our flags

    import recbole_hllm  # noqa: F401  (first: the RecBole fixes, e.g. quick_start without ray)
    from recbole.quick_start import load_data_and_model
    from recbole_hllm.evaluation.generation import GroundTruth, TitleRecord, attach_truth, score_titles
    from recbole_hllm.evaluation.predictions import read_jsonl

    config, model, dataset, _, valid, test = load_data_and_model(args.checkpoint)
    model.eval()
    table, originals = dataset.creative, model.original_titles
    test_targets, valid_targets = creative_targets(test), creative_targets(valid)
    held_out = set(test_targets.values()) | set(valid_targets.values())
    training_rows = [c for c in range(len(table.titles)) if c not in held_out]
    feat = test.dataset.inter_feat
    user_of_row = {int(u): row for row, u in enumerate(feat[dataset.uid_field].tolist())}
    u_vecs, history_vecs = user_vectors(model, feat)
    rows = sorted(test_targets)
    truth = GroundTruth.load(config["data_path"], config["dataset"])
    token = lambda field, i: str(dataset.id2token(field, i))  # noqa: E731

    def records(titles):
        out = [TitleRecord(user=token(dataset.uid_field, table.users[test_targets[r]]),
                           item=token(dataset.iid_field, table.items[test_targets[r]]), generated=t,
                           reference=table.titles[test_targets[r]], original=originals[table.items[test_targets[r]]])
               for r, t in zip(rows, titles)]
        attach_truth(out, truth)
        return out

    systems, notes = {}, {}
    titles_file = Path(args.checkpoint).with_name(Path(args.checkpoint).stem + "-titles.jsonl")
    sources = ([(str(titles_file), "HLLMCreator (this checkpoint)")] if titles_file.exists() else []) + \
        [tuple(spec.rsplit(":", 1)) if ":" in spec else (spec, Path(spec).stem) for spec in args.compare]
    pairs = [(r.user, r.item) for r in records([""] * len(rows))]
    for path, name in sources:
        by_pair = {(str(x["user"]), str(x["item"])): x["generated"]
                   for x in read_jsonl(path, ("user", "item", "generated"))}
        systems[name] = score_titles(records([by_pair[p] for p in pairs]), METRICS, truth)
    for name, vectors in (("nearest neighbour (U)", u_vecs), ("nearest neighbour (history)", history_vecs)):
        titles, fell_back = nearest_neighbour_titles(table, originals, rows, test_targets, vectors, user_of_row,
                                                     training_rows)
        systems[name] = score_titles(records(titles), METRICS, truth)
        notes[name] = f"{fell_back} of {len(rows)} pairs had no training title of their ad: original title"
    systems["original title"] = score_titles(records([originals[table.items[test_targets[r]]] for r in rows]),
                                             METRICS, truth)
    report = {"checkpoint": args.checkpoint, "pairs": len(rows), "training_titles": len(training_rows),
              "systems": systems, "notes": notes}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    lines = [f"{len(rows)} test pairs; {len(training_rows)} training reference titles.", "",
             "| system | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(str(s.get(m, "")) for m in METRICS) + " |" for name, s in systems.items()]
    lines += [""] + [f"* {name}: {note}" for name, note in notes.items()]
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
