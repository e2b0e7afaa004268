"""What the console scripts share: each model's default dataset, common flags, and how a command ends.

A :class:`~recbole_hllm.errors.UserError` (a bad file, flag or config value; its
message says what is wrong and what is expected) prints as ``prog: error: message``
and exits with status 2, as argparse does for a bad flag. Any other exception is a
bug and keeps its traceback. ``--debug`` (or ``RECBOLE_HLLM_DEBUG=1``) shows the
traceback of known errors too. Ctrl-C exits with 130 and one line.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from recbole_hllm.errors import UserError

DEFAULT_DATASET = {"HLLM": "ml-100k", "HLLMCreator": "ads-synth"}


def default_dataset(model: str) -> str:
    """The dataset a model runs on when ``--dataset`` is not given (RecBole's ml-100k for others)."""
    return DEFAULT_DATASET.get(model, "ml-100k")


def add_model_and_dataset(parser: argparse.ArgumentParser, config_files_help: str) -> None:
    """``--model``, ``--dataset`` and ``--config_files``, as RecBole's own scripts spell them."""
    parser.add_argument("--model", "-m", type=str, default="HLLM", help="model name (default: HLLM)")
    parser.add_argument("--dataset", "-d", type=str, default=None,
                        help="dataset name (default: ml-100k for HLLM, ads-synth for HLLMCreator)")
    parser.add_argument("--config_files", type=str, default=None, help=config_files_help)


def config_file_list(args) -> list[str] | None:
    """``--config_files 'a.yaml b.yaml'`` as RecBole's list of files."""
    return args.config_files.strip().split(" ") if args.config_files else None


def add_debug_flag(parser) -> None:
    parser.add_argument("--debug", action="store_true", help="show tracebacks of known errors too")


def parse_recbole_style(parser, argv: list[str] | None):
    """RecBole's command-line convention: our flags from ``parser``, any other
    ``--key=value`` left in ``sys.argv``, where RecBole's Config reads overrides."""
    args, _unknown = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    return args


def run_console(prog: str, body: Callable[[], int | None], debug: bool = False) -> int:
    """Run ``body()`` and turn its known errors into one line and an exit status."""
    debug = debug or os.environ.get("RECBOLE_HLLM_DEBUG", "") not in ("", "0")
    try:
        return body() or 0
    except UserError as exc:
        if debug:
            raise
        print(f"{prog}: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def one_line(message: str) -> str:
    return " ".join(message.split())
