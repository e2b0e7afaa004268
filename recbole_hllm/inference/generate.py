"""``hllm-generate``: personalised titles from a trained HLLMCreator checkpoint.

    hllm-generate --checkpoint saved/HLLMCreator-....pth [--users u1,u2] [--items a1,a2]
                  [--clusters 32 [--top-m 5] [--threshold 0.0]] [--out titles.jsonl]

For each user, the history is the user's whole sequence in the dataset (RecBole's
test row: its history plus its target, last ``MAX_ITEM_LIST_LENGTH`` items). Without
``--items`` each user gets a title for their own held-out ad (the history then stops
before it); with ``--items`` every listed ad is written for every listed user.

``--nproc N`` runs N worker processes (gloo on CPUs, NCCL with one GPU each): users
and (cluster, ad) pairs are shared out by batch and gathered, and rank 0 writes one
complete table, the same as one process writes.

``--clusters K`` clusters the users' embeddings and generates once per (cluster, ad)
from the centroid; ``--top-m`` / ``--threshold`` prune (cluster, ad) pairs by the
matching head (pruned pairs keep the original title and are flagged). ``--clusters 0``
(the default) or ``--per-user`` generates per user. Generations are appended to
``<out>.parts.jsonl`` as they are made, so an interrupted run resumes; the output
table is written atomically at the end, with a cluster summary (``<out>.clusters.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from recbole_hllm.checkpoint import check_checkpoint_file, load_checkpoint
from recbole_hllm.console import run_console
from recbole_hllm.errors import UserError
from recbole_hllm.inference.pruning import PruneRule

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hllm-generate", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="an HLLMCreator checkpoint (.pth) saved by RecBole")
    parser.add_argument("--users", default=None, help="comma-separated raw user ids (default: all test users)")
    parser.add_argument("--items", default=None, help="comma-separated raw item ids (default: each user's held-out ad)")
    parser.add_argument("--out", default="-", help="output JSONL table (default: stdout)")
    parser.add_argument("--batch-size", type=int, default=None, help="generation batch (default: generation_batch_size)")
    parser.add_argument("--clusters", type=int, default=0, help="K user clusters (0: per-user generation)")
    parser.add_argument("--per-user", action="store_true", help="one generation per user (same as --clusters 0)")
    parser.add_argument("--metric", choices=["cosine", "dot"], default="cosine", help="clustering geometry")
    parser.add_argument("--backend", choices=["kmeans", "minibatch", "faiss"], default="kmeans")
    parser.add_argument("--seed", type=int, default=0, help="clustering seed")
    parser.add_argument("--top-m", type=int, default=None, help="prune: generate only the M best-matching ads per cluster")
    parser.add_argument("--threshold", type=float, default=None, help="prune: generate only pairs with matching logit >= this")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--nproc", type=int, default=1, help="worker processes (gloo on CPU, NCCL with one GPU each)")
    parser.add_argument("--port", type=int, default=None, help="rendezvous port for --nproc > 1 (default: a free one)")
    parser.add_argument("--dist-backend", choices=["auto", "gloo", "nccl"], default="auto")
    parser.add_argument("--fsdp", action="store_true",
                        help="with --nproc > 1: shard the creative LLM's layers over the processes (large models)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of known errors too")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return run_console("hllm-generate", lambda: _generate_main(args), debug=args.debug)


def _generate_main(args) -> int:
    from recbole_hllm.inference.clustered import InferenceSettings

    split = lambda s: [x for x in s.split(",") if x] if s is not None else None  # noqa: E731
    settings = InferenceSettings(
        clusters=0 if args.per_user else args.clusters, metric=args.metric, backend=args.backend, seed=args.seed,
        prune=PruneRule(args.top_m, args.threshold), batch_size=args.batch_size or 32,
        show_progress=not args.no_progress)
    if args.clusters < 0:
        raise GenerateError(f"--clusters {args.clusters}: expected 0 (per user) or a positive number")
    from recbole_hllm.integration.launch import check_process_count

    check_process_count(args.nproc)
    job = (args.checkpoint, split(args.users), split(args.items), args.out, settings)
    if args.fsdp and args.nproc < 2:
        raise GenerateError("--fsdp shards the creative LLM over processes: give --nproc 2 or more")
    if args.nproc > 1:
        import torch

        from recbole_hllm.integration.launch import DistributedRunError, spawn

        if torch.cuda.is_available():  # each worker takes cuda:<rank> (_generate_worker)
            check_process_count(args.nproc, "cuda", torch.cuda.device_count(),
                                cpu_option="CUDA_VISIBLE_DEVICES= (no GPU visible)")

        try:
            spawn(_generate_worker, args.nproc, (args.port or _free_port(), args.dist_backend, job, args.fsdp))
        except DistributedRunError as exc:
            print(f"hllm-generate: {exc}", file=sys.stderr)
            return 1
        print(f"hllm-generate: {args.nproc} processes wrote {args.out}", file=sys.stderr)
        return 0
    result = generate(*job)
    pruned = sum(r["pruned"] for r in result.rows)
    print(f"hllm-generate: wrote {len(result.rows)} titles ({result.generations} generations, "
          f"{result.new_tokens} new tokens, {pruned} pairs pruned) in {result.seconds:.1f}s", file=sys.stderr)
    return 0


def _generate_worker(local_rank: int, nproc: int, port: int, backend: str, job: tuple, fsdp: bool) -> None:
    """One rank of ``hllm-generate --nproc``: joins the group, generates its share, gathers."""
    import datetime

    import torch
    import torch.distributed as dist

    from recbole_hllm.integration.distributed_fixes import choose_backend
    from recbole_hllm.integration.launch import share_cpu_threads

    backend = choose_backend(backend)
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    else:
        share_cpu_threads(nproc)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=local_rank, world_size=nproc,
                            timeout=datetime.timedelta(minutes=30))
    try:
        generate(*job, device=torch.device("cuda", local_rank) if use_cuda else torch.device("cpu"), fsdp=fsdp)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
