"""``hllm-eval``'s report as Markdown: one row of scores per system, the judge's verdicts, a gallery."""
from __future__ import annotations

from recbole_hllm.evaluation.generation import TitleRecord


def markdown(report: dict) -> str:
    metrics = [m for m in report["metrics"] if any(m in s for s in report["systems"].values())]
    where = f" of `{report['dataset']}`" if report["dataset"] else " (no dataset: context from the file)"
    lines = [f"{report['pairs']} (user, ad) pairs{where}.\n",
             "| system | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name, scores in report["systems"].items():
        lines.append(f"| {name} | " + " | ".join(_fmt(scores.get(m)) for m in metrics) + " |")
    if "judge" in report:
        j = report["judge"]
        lines += ["", f"Pairwise judge ({j['backend']}): {j['system_1']} vs {j['system_2']} on {j['total']} pairs, "
                      "each asked in both orders:", "",
                  "| Good | Same | Bad | Adv | unusable replies |", "|---|---|---|---|---|",
                  f"| {j['good']} | {j['same']} | {j['bad']} | {j['adv']:.1%} | {j['unusable_replies']} |"]
    if report.get("skipped"):
        lines += ["", "Skipped (context missing): " + ", ".join(f"{m} (no {need})" for m, need in
                                                                 report["skipped"].items())]
    if report.get("gallery"):
        lines += ["", f"Gallery ({report['systems_order'][0]}): the same ad written for different users.", ""]
        for ad in report["gallery"]:
            lines += [f"**{ad['item']}** original: {ad['original'] or '-'}", "",
                      "| user | interest | generated | reference |", "|---|---|---|---|"]
            lines += [f"| {r['user']} | {r['facet'] or '-'} | {_cell(r['generated'])} | {_cell(r['reference'])} |"
                      for r in ad["rows"]]
            lines.append("")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return (text or "-").replace("|", "\\|")


def gallery(records: list[TitleRecord], n_ads: int, per_ad: int = 4) -> list[dict]:
    """Up to ``n_ads`` ads written for several users, those with the most distinct
    titles first; per ad, up to ``per_ad`` users, one per interest (ground-truth facet)
    where the data has them, else one per distinct title."""
    by_ad: dict[str, list[TitleRecord]] = {}
    for r in records:
        by_ad.setdefault(r.item, []).append(r)
    shared = [rows for rows in by_ad.values() if len(rows) > 1]
    shared.sort(key=lambda rows: (-len({r.generated for r in rows}), rows[0].item))
    shown = []
    for rows in shared[:n_ads]:
        picked, seen = [], set()
        for r in rows:
            key = r.truth_facet or r.generated
            if key not in seen:
                seen.add(key)
                picked.append(r)
        shown.append({"item": rows[0].item, "original": rows[0].original,
                      "rows": [{"user": r.user, "facet": r.truth_facet, "generated": r.generated,
                                "reference": r.reference} for r in picked[:per_ad]]})
    return shown


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) and abs(value) < 10 else f"{value:.2f}"
