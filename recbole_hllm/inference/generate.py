"""``hllm-generate``: personalised titles from a trained HLLMCreator checkpoint.

    hllm-generate --checkpoint saved/HLLMCreator-....pth [--users u1,u2] [--items a1,a2] [--out titles.jsonl]

For each user, the history is the user's whole sequence in the dataset (RecBole's
test row: its history plus its target, last ``MAX_ITEM_LIST_LENGTH`` items). Without
``--items`` each user gets a title for their own held-out ad; with ``--items`` every
listed ad is written for every listed user. Rows are written as they are generated
(JSONL), so a long run keeps what it produced.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch


class GenerateError(ValueError):
    pass


def load_creator(checkpoint: str):
    import recbole_hllm  # noqa: F401
    from recbole.quick_start import load_data_and_model

    from recbole_hllm.model.hllm_creator import HLLMCreator

    config, model, dataset, _, _, test_data = load_data_and_model(checkpoint)
    if not isinstance(model, HLLMCreator):
        raise GenerateError(f"{checkpoint} holds a {type(model).__name__} model; hllm-generate needs an "
                            "HLLMCreator checkpoint (run_recbole --model=HLLMCreator)")
    model.eval()
    return config, model, test_data._dataset


def user_histories(test_dataset, max_len: int) -> dict[int, list[int]]:
    """Internal user id -> full item history (test row history + its target)."""
    feat = test_dataset.inter_feat
    seqs, lens = feat["item_id_list"], feat["item_length"]
    histories = {}
    for row, user in enumerate(feat[test_dataset.uid_field].tolist()):
        history = seqs[row, : int(lens[row])].tolist() + [int(feat[test_dataset.iid_field][row])]
        histories[user] = history[-max_len:]
    return histories


def _ids(dataset, field: str, raw: list[str]) -> list[int]:
    mapping = dataset.field2token_id[field]
    unknown = [r for r in raw if r not in mapping]
    if unknown:
        raise GenerateError(f"unknown {field} values: {', '.join(unknown[:10])}")
    return [mapping[r] for r in raw]


def generate(checkpoint: str, users: list[str] | None, items: list[str] | None, out, batch_size: int | None = None):
    config, model, dataset = load_creator(checkpoint)
    histories = user_histories(dataset, config["MAX_ITEM_LIST_LENGTH"])
    user_ids = _ids(dataset, dataset.uid_field, users) if users else sorted(histories)
    missing = [dataset.id2token(dataset.uid_field, u) for u in user_ids if u not in histories]
    if missing:
        raise GenerateError(f"users without a history in the test split: {', '.join(map(str, missing[:10]))}")
    item_ids = _ids(dataset, dataset.iid_field, items) if items else None
    if items is not None and not item_ids:
        raise GenerateError("--items is empty")
    pairs = [(u, i) for u in user_ids for i in (item_ids or [histories[u][-1]])]
    width = config["MAX_ITEM_LIST_LENGTH"]
    originals = model.original_titles or []
    batch_size = batch_size or config["generation_batch_size"]
    written = 0
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        seq = torch.zeros(len(chunk), width, dtype=torch.long)
        seq_len = torch.zeros(len(chunk), dtype=torch.long)
        for row, (user, item) in enumerate(chunk):
            # for a user's own held-out ad, the history stops before it
            history = histories[user] if item_ids is not None else histories[user][:-1]
            seq[row, : len(history)] = torch.tensor(history)
            seq_len[row] = len(history)
        titles, _ = model.generate_titles(seq.to(model.device), seq_len.to(model.device),
                                          torch.tensor([i for _, i in chunk], device=model.device))
        for (user, item), title in zip(chunk, titles):
            out.write(json.dumps({"user": str(dataset.id2token(dataset.uid_field, user)),
                                  "item": str(dataset.id2token(dataset.iid_field, item)),
                                  "original": originals[item] if originals else "",
                                  "generated": title}, ensure_ascii=False) + "\n")
            written += 1
        out.flush()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hllm-generate", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="an HLLMCreator checkpoint (.pth) saved by RecBole")
    parser.add_argument("--users", default=None, help="comma-separated raw user ids (default: all test users)")
    parser.add_argument("--items", default=None, help="comma-separated raw item ids (default: each user's held-out ad)")
    parser.add_argument("--out", default="-", help="output JSONL file (default: stdout)")
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args(argv)
    split = lambda s: [x for x in s.split(",") if x] if s is not None else None  # noqa: E731
    try:
        if args.out == "-":
            n = generate(args.checkpoint, split(args.users), split(args.items), sys.stdout, args.batch_size)
        else:
            with open(args.out, "w", encoding="utf-8") as out:
                n = generate(args.checkpoint, split(args.users), split(args.items), out, args.batch_size)
    except (GenerateError, FileNotFoundError) as exc:
        print(f"hllm-generate: {exc}", file=sys.stderr)
        return 2
    print(f"hllm-generate: wrote {n} titles", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
