"""Score a titles file (``<checkpoint>-titles.jsonl``) with the generation metrics.

    python -m benchmarks.score_titles --titles saved/HLLMCreator-...-titles.jsonl [--dataset dataset/ads-synth]

Prints, as JSON, the metrics of the generated titles and, for comparison, of the
references and of the original titles (the same metric code RecBole's test uses).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from recbole_hllm.evaluation.generation import GENERATION_METRICS, GroundTruth, TitleRecord, attach_truth, score_titles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--titles", required=True)
    parser.add_argument("--dataset", default=str(Path(__file__).resolve().parents[1] / "dataset" / "ads-synth"))
    args = parser.parse_args()
    folder = Path(args.dataset)
    truth = GroundTruth.load(str(folder), folder.name)
    rows = [json.loads(line) for line in open(args.titles, encoding="utf-8")]
    report = {"titles": args.titles, "pairs": len(rows)}
    for column in ("generated", "reference", "original"):
        records = [TitleRecord(r["user"], r["item"], r[column], r["reference"], r["original"]) for r in rows]
        attach_truth(records, truth)
        report[column] = score_titles(records, sorted(GENERATION_METRICS), truth)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
