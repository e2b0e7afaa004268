"""``hllm-eval``: score predictions files with the whole generation suite, and judge.

    hllm-eval --predictions saved/HLLMCreator-<time>-titles.jsonl --name HLLMCreator \\
              --compare ablation-titles.jsonl:no-U --dataset ads-synth --out results/eval
    hllm-eval ... --judge local --judge-pairs 100           # pairwise judge vs the original title

    hllm-eval --predictions other-system.jsonl --out results/other     # no dataset: the file alone

A predictions file is JSON lines with ``user`` and ``item`` (or RecBole's ``user_id`` and
``item_id``) and ``generated``; ``original``, ``reference``, ``history`` (a list of the
texts the user clicked before) and ``ad_text`` are used when present (the titles file
HLLMCreator's test writes, and ``hllm-generate``'s table, both qualify; so does another
system's output with its references). ``--references FILE`` (``user``, ``item``,
``reference``) supplies references. ``--dataset`` (optional) gives each pair the
context a row lacks: the user's clicks before that ad (texts of
``creative_title_field``), the ad's text, and ground truth files if it ships them.
A metric whose context is missing (ROUGE/BLEU: references; Pc: histories; fact
support: ad texts; interest-hit: ground truth) is skipped, with one line saying so.
Writes ``<out>.json`` and ``<out>.md`` (one row per system: each predictions file, the
original titles and the references when present, then a gallery: for a few ads, the
titles written for users with different interests beside the reference).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys

from recbole_hllm.cli.common import add_debug_flag, run_console
from recbole_hllm.errors import InvalidInputError
from recbole_hllm.evaluation.generation import (
    ALL_METRICS,
    GroundTruth,
    TitleRecord,
    attach_truth,
    missing_context,
    score_titles,
)
from recbole_hllm.evaluation.predictions import build_records, read_jsonl
from recbole_hllm.evaluation.report import gallery, markdown


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="hllm-eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--predictions", required=True, help="JSONL: user, item, generated[, original, reference]")
    p.add_argument("--name", help="system name of --predictions (default: the file name)")
    p.add_argument("--compare", action="append", default=[], metavar="FILE[:NAME]",
                   help="more predictions files for the same pairs (repeatable)")
    p.add_argument("--references", help="JSONL: user, item, reference (overrides the predictions' own)")
    p.add_argument("--dataset", help="RecBole dataset the ids belong to (context, ground truth); optional")
    p.add_argument("--data-path", help="folder holding <dataset>/")
    p.add_argument("--config-files", nargs="*", help="extra RecBole yaml files (text_fields, ...)")
    p.add_argument("--metrics", default=",".join(ALL_METRICS),
                   help=f"comma-separated (default: all): {', '.join(ALL_METRICS)}")
    p.add_argument("--out", required=True, help="report path stem: writes <out>.json and <out>.md")
    p.add_argument("--gallery-ads", type=int, default=5, help="ads shown in the report's gallery (0: none)")
    judge = p.add_argument_group("pairwise LLM judge")
    judge.add_argument("--judge", choices=("local", "openai"), help="judge the first system against --judge-against")
    judge.add_argument("--judge-against", default="original", help="'original' or a --compare system name")
    judge.add_argument("--judge-pairs", type=int, default=100, help="pairs judged (seeded sample; 0 = all)")
    judge.add_argument("--judge-model", help="local: smollm2 or a HF directory; openai: the model name")
    judge.add_argument("--judge-base-url", help="openai: endpoint (default $OPENAI_BASE_URL)")
    judge.add_argument("--api-key-env", default="OPENAI_API_KEY")
    judge.add_argument("--concurrency", type=int, default=8)
    judge.add_argument("--batch-size", type=int, default=8)
    judge.add_argument("--threads", type=int)
    judge.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    add_debug_flag(p)
    return p.parse_args(argv)


def systems_from(args, source, references) -> dict[str, list[TitleRecord]]:
    import dataclasses

    main_name = args.name or os.path.basename(args.predictions)
    main_rows = read_jsonl(args.predictions, ("user", "item", "generated"))
    # the main file's references serve every system (a --compare file may have none)
    references = {**{(str(r["user"]), str(r["item"])): r["reference"] for r in main_rows if r.get("reference")},
                  **references}
    systems = {main_name: build_records(main_rows, source, references)}
    keys = [(r.user, r.item) for r in systems[main_name]]
    for spec in args.compare:
        path, _, name = spec.partition(":")
        records = build_records(read_jsonl(path, ("user", "item", "generated")), source, references)
        if sorted((r.user, r.item) for r in records) != sorted(keys):
            raise InvalidInputError(f"{path}: its (user, item) pairs differ from {args.predictions}'s; "
                             "systems are compared on the same pairs")
        systems[name or os.path.basename(path)] = records
    base = systems[main_name]
    if all(r.original for r in base):
        systems["original title"] = [dataclasses.replace(r, generated=r.original) for r in base]
    if all(r.reference for r in base):
        systems["reference"] = [dataclasses.replace(r, generated=r.reference) for r in base]
    return systems


def run_judge(args, systems: dict) -> dict:
    from recbole_hllm.chat.factory import make_chat_backend
    from recbole_hllm.evaluation.judge import JudgeCase, PairwiseJudge

    first = next(iter(systems))
    against = "original title" if args.judge_against == "original" else args.judge_against
    if against not in systems:
        raise InvalidInputError(f"--judge-against {args.judge_against!r}: systems are {list(systems)}")
    pairs = list(range(len(systems[first])))
    if args.judge_pairs and args.judge_pairs < len(pairs):
        pairs = sorted(random.Random(args.seed).sample(pairs, args.judge_pairs))
    other = {(r.user, r.item): r for r in systems[against]}
    cases = [JudgeCase(r.user, r.item, r.ad_text, r.history, r.generated, other[(r.user, r.item)].generated)
             for r in (systems[first][i] for i in pairs)]
    backend = make_chat_backend(args.judge, args.judge_model, args.judge_base_url, args.api_key_env,
                                batch_size=args.batch_size, threads=args.threads, seed=args.seed,
                                concurrency=args.concurrency, model_setting="--judge-model")
    with backend:
        result = PairwiseJudge(backend, cache_path=f"{args.out}.judge-cache.jsonl").judge(
            cases, progress=not args.no_progress)
    with open(f"{args.out}.judge-verdicts.jsonl", "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(v, ensure_ascii=False) + "\n" for v in result.verdicts))
    return {"backend": getattr(backend, "identity", backend.name), "system_1": first, "system_2": against,
            **result.as_dict()}


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_console("hllm-eval", lambda: _evaluate(args), debug=args.debug)


def _evaluate(args) -> int:
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown:
        raise InvalidInputError(f"--metrics: unknown {unknown}; available: {', '.join(ALL_METRICS)}")
    source = None
    if args.dataset:
        from recbole_hllm.construction.source import load_source

        source = load_source(args.dataset, args.data_path, config_file_list=args.config_files)
    references = {}
    if args.references:
        references = {(str(r["user"]), str(r["item"])): r["reference"]
                      for r in read_jsonl(args.references, ("user", "item", "reference"))}
    systems = systems_from(args, source, references)
    truth = GroundTruth.load(source.data_path, source.name) if source is not None else None
    main_records = next(iter(systems.values()))
    skipped = missing_context(main_records, metrics, truth)
    if skipped:
        needs = sorted(set(skipped.values()))
        print(f"hllm-eval: skipping {', '.join(skipped)}: no {' / '.join(needs)} in the predictions"
              + ("" if source is not None else " (give --dataset, or add the fields to the file)"), file=sys.stderr)
    scored = [m for m in metrics if m not in skipped]
    report = {"dataset": source.name if source is not None else None, "pairs": len(main_records),
              "metrics": scored, "skipped": skipped, "systems": {}, "systems_order": list(systems)}
    for name, records in systems.items():
        attach_truth(records, truth)
        report["systems"][name] = score_titles(records, scored, truth)
    report["gallery"] = gallery(main_records, args.gallery_ads) if args.gallery_ads else []
    if args.judge:
        report["judge"] = run_judge(args, systems)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(f"{args.out}.json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    with open(f"{args.out}.md", "w", encoding="utf-8") as f:
        f.write(markdown(report))
    print(markdown(report))
    print(f"wrote {args.out}.json and {args.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
