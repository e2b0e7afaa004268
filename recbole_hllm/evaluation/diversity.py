"""Did personalisation vary the title? Diversity across users.

* ``distinct-1`` / ``distinct-2``: distinct n-grams / all n-grams over all generated
  titles (lower-cased, whitespace tokens), as in dialogue and headline generation;
* ``self_bleu``: for each ad written for 2+ users, the sacreBLEU sentence BLEU (0-100)
  of each of its titles against that ad's other titles, averaged; 100 = every user got
  the same title, lower = more varied;
* ``titles_per_ad`` (in ``generation.py``): distinct titles per such ad.
"""
from __future__ import annotations

from collections import defaultdict


def _distinct(n: int):
    def metric(records, truth) -> float | None:
        grams = [tuple(tokens[i:i + n]) for r in records
                 for tokens in [r.generated.lower().split()] for i in range(len(tokens) - n + 1)]
        return len(set(grams)) / len(grams) if grams else None

    metric.__doc__ = f"distinct {n}-grams / all {n}-grams over the generated titles"
    return metric


distinct_1, distinct_2 = _distinct(1), _distinct(2)


def self_bleu(records, truth) -> float | None:
    import sacrebleu

    by_ad = defaultdict(list)
    for r in records:
        by_ad[r.item].append(r.generated)
    scores = []
    for titles in by_ad.values():
        if len(titles) < 2:
            continue
        for k, title in enumerate(titles):
            others = titles[:k] + titles[k + 1:]
            scores.append(sacrebleu.sentence_bleu(title, others).score)
    return sum(scores) / len(scores) if scores else None
