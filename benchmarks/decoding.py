"""Decoding settings on one trained HLLMCreator checkpoint: the test pass's title metrics for each.

    python -m benchmarks.decoding --checkpoint saved/HLLMCreator-....pth \\
        --setting plain: --setting g1:user_guidance=1.0 --setting g2mean:user_guidance=2.0,guidance_contrast=batch_mean \\
        [--limit 300] [--name decoding-ads-synth]

Each ``--setting NAME:KEY=VALUE,...`` overrides ``generation_<KEY>`` (e.g. user_guidance,
guidance_contrast, max_new_tokens) and runs exactly what the test pass of
``run_recbole --model=HLLMCreator`` runs on titles (``TitleScoring.test_scores``): every
test pair's title from the user's own U, then the seeded sample from another user's U
(``shuffled_*``, ``u_gain``). ``--limit N`` screens on the first N test pairs. Settings
run back to back in one process, so their seconds compare; each finished setting is
appended to ``results/<name>.jsonl`` at once and skipped when the command is run again
(resume), and ``results/<name>.md`` is rewritten from that file; the titles go to
``--titles-dir`` (log/decoding, not committed).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["interest_hit", "shuffled_interest_hit", "u_gain", "off_facet", "rouge-l", "titles_per_ad", "self_bleu"]


def parse_setting(text: str) -> tuple[str, dict]:
    """``NAME:KEY=VALUE,...`` -> (NAME, {KEY: VALUE}), values read as JSON where they parse."""
    name, _, body = text.partition(":")
    if not name:
        raise SystemExit(f"--setting {text!r}: expected NAME:KEY=VALUE,... (NAME: may stand alone)")
    values = {}
    for pair in filter(None, body.split(",")):
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--setting {text!r}: {pair!r} is not KEY=VALUE")
        try:
            values[key] = json.loads(value)
        except json.JSONDecodeError:
            values[key] = value
    return name, values


def run_setting(model, config, dataset, overrides: dict, titles_path: str, limit: int | None) -> dict:
    from recbole_hllm.evaluation.title_scoring import TitleScoring

    unknown = set(overrides) - set(model.generation)
    if unknown:
        raise SystemExit(f"unknown generation setting(s) {sorted(unknown)}; known: {sorted(model.generation)}")
    saved = dict(model.generation)
    model.generation.update(overrides)
    try:
        start = time.perf_counter()
        scores = TitleScoring(config, model, logging.getLogger("decoding")).test_scores(dataset, titles_path, limit)
        return {"seconds": round(time.perf_counter() - start, 1), **scores}
    finally:
        model.generation.clear()
        model.generation.update(saved)


def table(rows: list[dict]) -> str:
    head = "| setting | overrides | pairs | " + " | ".join(COLUMNS) + " | seconds (own + shuffled) |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 4)]
    for r in rows:
        values = " | ".join(str(r["scores"].get(c, "")) for c in COLUMNS)
        lines.append(f"| {r['setting']} | {json.dumps(r['overrides'])} | {r['pairs']} | {values} | "
                     f"{r['scores']['seconds']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--setting", action="append", required=True, help="NAME:KEY=VALUE,... (generation_<KEY>)")
    p.add_argument("--limit", type=int, default=None, help="first N test pairs only (default: all)")
    p.add_argument("--name", default="decoding-ads-synth")
    p.add_argument("--out-dir", default=str(ROOT / "results"))
    p.add_argument("--titles-dir", default="log/decoding", help="where each setting's titles file goes")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    settings = [parse_setting(s) for s in args.setting]
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from recbole_hllm.inference.generate import load_creator

    config, model, dataset = load_creator(args.checkpoint)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / f"{args.name}.jsonl"
    done = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
    key = lambda name, overrides: (name, json.dumps(overrides, sort_keys=True), args.limit)  # noqa: E731
    finished = {key(r["setting"], r["overrides"]) for r in done if r["checkpoint"] == args.checkpoint}
    for name, overrides in settings:
        if key(name, overrides) in finished:
            print(f"{name}: done before, skipped", file=sys.stderr)
            continue
        titles = os.path.join(args.titles_dir, f"{args.name}-{name}-titles.jsonl")
        scores = run_setting(model, config, dataset, overrides, titles, args.limit)
        row = {"setting": name, "overrides": overrides, "pairs": args.limit or "all", "checkpoint": args.checkpoint,
               "scores": {k: v for k, v in scores.items() if not k.startswith("original_")}}
        with open(jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        done.append(row)
        print(json.dumps(row), flush=True)
    (out / f"{args.name}.md").write_text(table([r for r in done if r["checkpoint"] == args.checkpoint]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
