"""The ``run_recbole`` command: RecBole's ``run_recbole.py`` with the plugin loaded.

Same flags as RecBole's script (--model, --dataset, --config_files, --nproc, --ip,
--port, --world_size, --group_offset) plus RecBole's own ``--key=value`` overrides,
which RecBole's ``Config`` reads from ``sys.argv``. RecBole's built-in models work
through it unchanged. With ``--nproc N`` (and ``--world_size``/``--ip``/``--port``/
``--group_offset`` across nodes) RecBole's distributed engine runs N workers, over gloo
on CPUs and NCCL on GPUs (``dist_backend``); see :mod:`recbole_hllm.integration.distributed_fixes`.
"""
from __future__ import annotations

import argparse
import sys

from recbole_hllm.cli.common import (add_debug_flag, add_model_and_dataset, config_file_list, default_dataset,
                                     parse_recbole_style, run_console)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_recbole",
        description="Train and evaluate a RecBole model (RecBole's built-ins or recbole_hllm's HLLM). "
        "Any other --key=value overrides a RecBole config key.",
    )
    add_model_and_dataset(parser, config_files_help="space-separated yaml files")
    parser.add_argument("--nproc", type=int, default=1, help="number of processes")
    parser.add_argument("--ip", type=str, default="localhost", help="master node ip")
    parser.add_argument("--port", type=str, default="5678", help="master node port")
    parser.add_argument("--world_size", type=int, default=-1, help="total number of processes")
    parser.add_argument("--group_offset", type=int, default=0, help="global rank offset of this node")
    add_debug_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_recbole_style(build_parser(), argv)
    return run_console("run_recbole", lambda: _run(args), debug=args.debug)


def _run(args) -> int:
    import recbole_hllm  # noqa: F401  (compatibility fixes + registration)
    from recbole_hllm.integration.launch import DistributedRunError, run

    try:
        run(args.model, args.dataset or default_dataset(args.model), config_file_list=config_file_list(args),
            nproc=args.nproc, world_size=args.world_size, ip=args.ip, port=args.port, group_offset=args.group_offset)
    except DistributedRunError as exc:  # a bug in a worker: its traceback is in the message
        print(f"run_recbole: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
