"""``hllm-build-creatives``: personalised training titles for a RecBole dataset.

    hllm-build-creatives --dataset ml-100k --users 20 --ads-per-user 3 --backend local
    hllm-build-creatives --dataset mydata --backend openai --model deepseek-r1 \\
                         --base-url http://127.0.0.1:8000/v1 --concurrency 16

The API key is read from ``$OPENAI_API_KEY`` (or the variable named by
``--api-key-env``); it is never printed or logged. A rerun with the same settings
resumes where the last one stopped. See ``recbole_hllm/construction/builder.py``.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

import yaml

from recbole_hllm.cli.common import add_debug_flag, run_console
from recbole_hllm.construction.ads import STRATEGIES
from recbole_hllm.construction.builder import BuildOptions, CreativeBuilder, paths_for
from recbole_hllm.construction.prompts import load_settings
from recbole_hllm.errors import InvalidInputError


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hllm-build-creatives", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_argument_group("data")
    data.add_argument("--dataset", required=True, help="RecBole dataset name (ml-100k is read from the recbole package)")
    data.add_argument("--data-path", help="folder holding <dataset>/ (RecBole's data_path)")
    data.add_argument("--config-files", nargs="*", help="extra RecBole yaml files (filters, text_fields, ...)")
    data.add_argument("--title-field", help="item field holding the ad title (default: creative_title_field, "
                                            "else the first text field)")
    data.add_argument("--users", type=int, default=20, help="users sampled (seeded); 0 = all (default 20)")
    data.add_argument("--user-ids", help="comma-separated raw user ids (instead of --users)")
    data.add_argument("--ads", choices=STRATEGIES, default="next",
                      help="next: the user's last clicks (trainable); random: unclicked catalogue items; "
                           "matching: the unclicked items --checkpoint ranks highest")
    data.add_argument("--ads-per-user", type=int, default=3)
    data.add_argument("--checkpoint", help="--ads matching: an HLLM or HLLMCreator checkpoint (.pth)")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--out", help="output .creative path (default <data_path>/<dataset>.creative, "
                                    "or ./<dataset>.creative for packaged datasets)")
    steps = p.add_argument_group("prompts and rules")
    steps.add_argument("--prompts", help="a yaml like properties/construction/cot.yaml")
    steps.add_argument("--history-len", type=int, help="recent clicks shown to the profile step (default 50)")
    steps.add_argument("--max-added-words", type=int, help="words a title may add (default 6)")
    steps.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any setting of the yaml (value parsed as yaml)")
    llm = p.add_argument_group("LLM backend")
    llm.add_argument("--backend", choices=("local", "openai"), default="local")
    llm.add_argument("--model", help="local: smollm2 (default) or a HF model directory; openai: the model name "
                                     "(default $OPENAI_MODEL)")
    llm.add_argument("--base-url", help="openai: endpoint, e.g. http://127.0.0.1:8000/v1 (default $OPENAI_BASE_URL)")
    llm.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    llm.add_argument("--timeout", type=float, default=120.0, help="openai: seconds per request")
    llm.add_argument("--retries", type=int, default=5, help="openai: retries on 429/5xx/network errors")
    llm.add_argument("--concurrency", type=int, default=8, help="openai: requests in flight")
    llm.add_argument("--no-json-schema", action="store_true",
                     help="openai: do not send response_format (for servers that reject it)")
    llm.add_argument("--batch-size", type=int, default=8, help="local: prompts per generate call")
    llm.add_argument("--threads", type=int, help="local: torch CPU threads")
    llm.add_argument("--device", default="cpu", help="local: cpu, cuda, cuda:1, ...")
    llm.add_argument("--chunk", type=int, default=8, help="users per chunk (batching/concurrency unit)")
    run = p.add_argument_group("run")
    run.add_argument("--restart", action="store_true", help="discard the journal of an earlier run")
    run.add_argument("--no-progress", action="store_true")
    add_debug_flag(run)
    return p.parse_args(argv)


def settings_from_args(args) -> dict:
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInputError(f"--set {item!r}: expected KEY=VALUE")
        overrides[key.strip()] = yaml.safe_load(value)
    if args.history_len is not None:
        overrides["history_len"] = args.history_len
    if args.max_added_words is not None:
        overrides["max_added_words"] = args.max_added_words
    return load_settings(args.prompts, overrides)


def make_backend(args):
    from recbole_hllm.chat.factory import make_chat_backend

    return make_chat_backend(args.backend, args.model, args.base_url, args.api_key_env, args.device,
                             args.batch_size, args.threads, args.seed, args.timeout, args.retries,
                             args.concurrency, not args.no_json_schema)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_console("hllm-build-creatives", lambda: _build(args), debug=args.debug)


def _build(args) -> int:
    from recbole_hllm.construction.source import default_output, load_source

    settings = settings_from_args(args)
    source = load_source(args.dataset, args.data_path, args.title_field, args.config_files)
    options = BuildOptions(
        out=args.out or default_output(source), n_users=args.users or None,
        user_ids=args.user_ids.split(",") if args.user_ids else None, ads=args.ads,
        ads_per_user=args.ads_per_user, checkpoint=args.checkpoint, seed=args.seed, chunk_users=args.chunk,
        progress=not args.no_progress, restart=args.restart)
    try:
        with make_backend(args) as backend:
            summary = CreativeBuilder(source, backend, settings, options).run()
    except KeyboardInterrupt:
        print("\nhllm-build-creatives: interrupted; finished rows are in the journal, rerun the same "
              "command to resume.", file=sys.stderr)
        return 130
    paths = paths_for(options.out)
    print(json.dumps(asdict(summary), indent=2))
    print(f"wrote {paths['creative']} ({summary.kept} rows), {paths['rejects']}, {paths['profiles']}, "
          f"{paths['summary']}")
    if summary.unfinished_pairs:
        print(f"{summary.unfinished_pairs} pairs are unfinished (failed calls): rerun the same command to finish them.")
    print(f"train: run_recbole --model=HLLMCreator --dataset={args.dataset} --creative_file={paths['creative']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
