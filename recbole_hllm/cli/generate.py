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
The work itself is :func:`recbole_hllm.inference.generate.generate`.
"""
from __future__ import annotations

import argparse
import sys

from recbole_hllm.cli.common import add_debug_flag, run_console
from recbole_hllm.inference.generate import GenerateError, generate
from recbole_hllm.inference.pruning import PruneRule


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
    add_debug_flag(parser)
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
