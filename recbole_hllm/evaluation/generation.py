"""Generation metrics by name, so configs can list them (``generation_metrics: [rouge-l, ...]``).

* overlap (``overlap.py``): ``rouge-1``, ``rouge-2``, ``rouge-l`` (F1, stemmed), ``bleu``
  (sacreBLEU, 0-100);
* personalisation (``personalisation.py``): ``pc_avg``, ``pc_max`` (MiniLM cosine to the
  user's clicked item texts), ``pc_avg_tok``, ``pc_max_tok`` (ROUGE-1 F1 to them);
* factuality (``factuality.py``): ``fact_support``, ``fact_pass``;
* diversity (``diversity.py``): ``distinct-1``, ``distinct-2``, ``self_bleu``;
* ``interest_hit``: share of titles that carry the selling point of the ground-truth
  facet (a keyword of that facet appears), on datasets with ground truth.
* ``off_facet``: share of titles that claim a facet the ad does not have.
* ``titles_per_ad``: distinct generated titles per ad, over ads written for 2+ users.

Ground truth comes from optional files next to the dataset (the synthetic dataset
ships them): ``<name>.truth`` (user, item, facet), ``<name>.sellingpoint`` (item,
facet, phrase) and ``<name>.facet`` (facet, keyword; one row per keyword).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from typing import Callable

from recbole_hllm.data.keywords import groups_in_text
from recbole_hllm.evaluation import diversity, factuality, overlap, personalisation


@dataclass
class TitleRecord:
    """One generated title with what it is judged against (raw user/item tokens)."""

    user: str
    item: str
    generated: str
    reference: str = ""
    original: str = ""
    truth_facet: str | None = None
    ad_facets: frozenset = field(default_factory=frozenset)
    history: list = field(default_factory=list)  # texts of the items the user clicked before, oldest first
    ad_text: str = ""  # the ad's text (title and description) the title must stay true to


@dataclass
class GroundTruth:
    pair_facet: dict = field(default_factory=dict)  # (user, item) -> facet
    ad_facets: dict = field(default_factory=dict)  # item -> set of facets
    facet_keywords: dict = field(default_factory=dict)  # facet -> [keyword]

    @classmethod
    def load(cls, data_path: str, name: str) -> "GroundTruth | None":
        base = os.path.join(data_path, name)
        files = [f"{base}.{suffix}" for suffix in ("truth", "sellingpoint", "facet")]
        if not all(os.path.isfile(f) for f in files):
            return None
        truth = cls()
        for row in _read_atomic(files[0]):
            truth.pair_facet[(row["user_id"], row["item_id"])] = row["facet"]
        for row in _read_atomic(files[1]):
            truth.ad_facets.setdefault(row["item_id"], set()).add(row["facet"])
        for row in _read_atomic(files[2]):
            truth.facet_keywords.setdefault(row["facet"], []).append(row["keyword"].lower())
        return truth

    def facets_in(self, text: str) -> set[str]:
        """Facets whose keywords occur in ``text`` (case-insensitive, whole words)."""
        return groups_in_text(text, self.facet_keywords)


def _read_atomic(path: str) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [h.split(":")[0] for h in next(reader)]
        return [dict(zip(header, row)) for row in reader if row]


def _interest_hit(records, truth) -> float | None:
    judged = [r for r in records if r.truth_facet]
    if truth is None or not judged:
        return None
    return sum(r.truth_facet in truth.facets_in(r.generated) for r in judged) / len(judged)


def _off_facet(records, truth) -> float | None:
    judged = [r for r in records if r.ad_facets]
    if truth is None or not judged:
        return None
    return sum(bool(truth.facets_in(r.generated) - r.ad_facets) for r in judged) / len(judged)


def _titles_per_ad(records, truth) -> float | None:
    """Mean number of distinct generated titles per ad, over ads generated for 2+ users.

    Why: a model that ignores U writes one title per ad whatever the user; this is the
    quickest check that personalisation varies the output (compare the references')."""
    by_ad: dict[str, set] = {}
    counts: dict[str, int] = {}
    for r in records:
        by_ad.setdefault(r.item, set()).add(r.generated.strip().lower())
        counts[r.item] = counts.get(r.item, 0) + 1
    shared = [ad for ad, n in counts.items() if n > 1]
    return sum(len(by_ad[ad]) for ad in shared) / len(shared) if shared else None


GENERATION_METRICS: dict[str, Callable] = {
    "rouge-1": overlap.rouge_1,
    "rouge-2": overlap.rouge_2,
    "rouge-l": overlap.rouge_l,
    "bleu": overlap.bleu,
    "pc_avg": personalisation.pc_avg,
    "pc_max": personalisation.pc_max,
    "pc_avg_tok": personalisation.pc_avg_tok,
    "pc_max_tok": personalisation.pc_max_tok,
    "fact_support": factuality.fact_support,
    "fact_pass": factuality.fact_pass,
    "interest_hit": _interest_hit,
    "off_facet": _off_facet,
    "titles_per_ad": _titles_per_ad,
    "distinct-1": diversity.distinct_1,
    "distinct-2": diversity.distinct_2,
    "self_bleu": diversity.self_bleu,
}
ALL_METRICS = list(GENERATION_METRICS)

# what each metric needs besides the generated titles (the others need nothing more)
METRIC_NEEDS = {
    **{m: "reference" for m in ("rouge-1", "rouge-2", "rouge-l", "bleu")},
    **{m: "history" for m in ("pc_avg", "pc_max", "pc_avg_tok", "pc_max_tok")},
    **{m: "ad_text" for m in ("fact_support", "fact_pass")},
    **{m: "ground truth" for m in ("interest_hit", "off_facet")},
}


def missing_context(records: list[TitleRecord], names, truth: GroundTruth | None) -> dict[str, str]:
    """{metric: what it lacks} for the named metrics that ``records`` cannot support."""
    present = {"reference": any(r.reference for r in records), "history": any(r.history for r in records),
               "ad_text": any(r.ad_text or r.original for r in records), "ground truth": truth is not None}
    return {name: METRIC_NEEDS[name] for name in names if name in METRIC_NEEDS and not present[METRIC_NEEDS[name]]}


def score_titles(records: list[TitleRecord], names, truth: GroundTruth | None) -> dict[str, float]:
    """Compute the named metrics; metrics that need missing ground truth are left out."""
    unknown = [n for n in names if n not in GENERATION_METRICS]
    if unknown:
        raise ValueError(f"unknown generation metrics {unknown}; available: {sorted(GENERATION_METRICS)}")
    if not records:
        return {}
    scores = {}
    for name in names:
        value = GENERATION_METRICS[name](records, truth)
        if value is not None:
            scores[name] = round(float(value), 4)
    return scores


def attach_truth(records: list[TitleRecord], truth: GroundTruth | None) -> None:
    if truth is None:
        return
    for r in records:
        r.truth_facet = truth.pair_facet.get((r.user, r.item))
        r.ad_facets = frozenset(truth.ad_facets.get(r.item, ()))
