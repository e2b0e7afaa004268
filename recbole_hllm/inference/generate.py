"""Personalised titles from a trained HLLMCreator checkpoint: the library behind ``hllm-generate``.

:func:`load_creator` reads a checkpoint as RecBole's ``load_data_and_model`` does;
:func:`generate` writes the title table for raw user / item ids, per user or per user
cluster (:mod:`.clustered`), in one process or as one rank of several (the command's
``--nproc``: :mod:`recbole_hllm.cli.generate`), rank 0 writing the one complete table.

For each user, the history is the user's whole sequence in the dataset (RecBole's
test row: its history plus its target, last ``MAX_ITEM_LIST_LENGTH`` items). Without
items each user gets a title for their own held-out ad (the history then stops
before it); with items every listed ad is written for every listed user. Generations
are appended to ``<out>.parts.jsonl`` as they are made, so an interrupted run
resumes; the output table is written atomically at the end, with a cluster summary
(``<out>.clusters.json``).
"""
from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

from recbole_hllm import old_paths
from recbole_hllm.checkpoint import check_checkpoint_file, load_checkpoint
from recbole_hllm.errors import UserError

if TYPE_CHECKING:  # torch-heavy: imported where generation starts, so --help and argument errors come at once
    from recbole_hllm.inference.clustered import InferenceResult, InferenceSettings


class GenerateError(UserError, ValueError):
    pass


def load_creator(checkpoint: str, device=None, fsdp: bool = False):
    """(config, model in eval mode, test dataset) from a checkpoint, the model on ``device``
    (default: the device it was trained on); RecBole's ``load_data_and_model`` steps."""
    check_checkpoint_file(checkpoint)  # before the heavy imports: a wrong path fails at once
    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, init_logger, init_seed

    import recbole_hllm  # noqa: F401
    from recbole_hllm.distributed.fsdp import load_full_state_dict
    from recbole_hllm.model.hllm_creator import HLLMCreator

    state = load_checkpoint(checkpoint, map_location="cpu")  # RecBole's own format (pickled Config)
    config = state["config"]
    config["single_spec"], config["local_rank"] = True, 0  # the data are read whole, in every process
    if device is not None:
        config["device"] = torch.device(device)
    config["creative_llm_fsdp"] = fsdp  # shard the creative LLM's layers over the ranks (--fsdp)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    train_data, _, test_data = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    load_full_state_dict(model, state["state_dict"])
    model.load_other_parameter(state.get("other_parameter"))
    if not isinstance(model, HLLMCreator):
        raise GenerateError(f"{checkpoint} holds a {type(model).__name__} model; hllm-generate needs an "
                            "HLLMCreator checkpoint (run_recbole --model=HLLMCreator)")
    if model.creative_user_text:  # checked before any U is computed
        raise GenerateError(f"{checkpoint} was trained with creative_user_text = {model.creative_user_text!r} "
                            "(the user's words in the prompt, a reference baseline); hllm-generate writes from U only")
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


def generate(checkpoint: str, users: list[str] | None, items: list[str] | None, out_path: str,
             settings: InferenceSettings | None = None, device=None, fsdp: bool = False) -> InferenceResult:
    """Write the title table for the given raw user / item ids (all test users' own ads by default)."""
    from recbole_hllm.distributed.context import barrier, rank
    from recbole_hllm.inference.clustered import InferenceSettings, all_parts_files, personalise

    settings = settings or InferenceSettings(clusters=0)
    config, model, dataset = load_creator(checkpoint, device, fsdp)
    histories = user_histories(dataset, config["MAX_ITEM_LIST_LENGTH"])
    user_ids = _ids(dataset, dataset.uid_field, users) if users else sorted(histories)
    missing = [dataset.id2token(dataset.uid_field, u) for u in user_ids if u not in histories]
    if missing:
        raise GenerateError(f"users without a history in the test split: {', '.join(map(str, missing[:10]))}")
    if items is not None and not items:
        raise GenerateError("--items is empty: give at least one ad id")
    item_ids = _ids(dataset, dataset.iid_field, items) if items else None
    if item_ids is None:  # each user's own held-out ad; its history stops before it
        pairs = [(u, histories[u][-1]) for u in user_ids]
        histories = {u: histories[u][:-1] for u in user_ids}
    else:
        pairs = [(u, i) for u in user_ids for i in item_ids]
    to_stdout = out_path == "-"
    parts = None if to_stdout else f"{out_path}.parts.jsonl"
    fingerprint = settings.fingerprint(checkpoint, user_ids, sorted({i for _, i in pairs}), model.generation)
    result = personalise(model, histories, pairs, settings, config["MAX_ITEM_LIST_LENGTH"], parts, fingerprint)
    barrier()  # every rank's parts are written and gathered
    if rank() != 0:
        return result
    _write_table(result, dataset, model, out_path)
    if not to_stdout:
        if result.summary:
            _write_json(f"{out_path}.clusters.json", _raw_summary(result.summary, dataset))
        for path in all_parts_files(parts):
            if os.path.exists(path):
                os.remove(path)
    return result


def _write_table(result: InferenceResult, dataset, model, out_path: str) -> None:
    originals = model.original_titles or []
    lines = []
    for row in result.rows:
        lines.append(json.dumps({
            "user": str(dataset.id2token(dataset.uid_field, row["user"])),
            "item": str(dataset.id2token(dataset.iid_field, row["item"])),
            "cluster": row["cluster"], "score": row["score"], "pruned": row["pruned"],
            "original": originals[row["item"]] if originals else "", "generated": row["title"],
        }, ensure_ascii=False))
    if out_path == "-":
        sys.stdout.write("\n".join(lines) + "\n")
        return
    tmp = f"{out_path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, out_path)


def _raw_summary(summary: list[dict], dataset) -> list[dict]:
    return [{**c, "top_items": [str(dataset.id2token(dataset.iid_field, i)) for i in c["top_items"]]}
            for c in summary]


def _write_json(path: str, value) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
    os.replace(tmp, path)


def __getattr__(name):  # the command's main moved to recbole_hllm.cli.generate (old_paths.MOVED_NAMES)
    return old_paths.moved_name(__name__, name)


if __name__ == "__main__":  # the old `python -m recbole_hllm.inference.generate`: the script is cli/generate.py
    from recbole_hllm.old_paths import run_moved_script

    run_moved_script(__spec__.name)
