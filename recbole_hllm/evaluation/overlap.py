"""Overlap with the reference title: ROUGE-1/2/L (rouge-score, stemmed) and sacreBLEU.

These are the numbers PENS, LaMP-4/5 and their follow-ups report, computed with the
reference packages, so they compare with published figures. ROUGE values are F1 in
[0, 1], averaged over titles; BLEU is sacreBLEU's corpus BLEU on its usual 0-100 scale.
METEOR is not offered: its maintained implementations (nltk, evaluate) need the
WordNet corpus downloaded at run time.
"""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def _scorer(kind: str):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([kind], use_stemmer=True)


def rouge_f1(kind: str, reference: str, candidate: str) -> float:
    """ROUGE F1 of one pair; ``kind`` is rouge1, rouge2 or rougeL."""
    return _scorer(kind).score(reference, candidate)[kind].fmeasure


def _rouge(kind: str):
    def metric(records, truth) -> float | None:
        judged = [r for r in records if r.reference]
        if not judged:
            return None
        return sum(rouge_f1(kind, r.reference, r.generated) for r in judged) / len(judged)

    metric.__doc__ = f"{kind} F1 against the reference title (stemmed), mean over titles."
    return metric


rouge_1, rouge_2, rouge_l = _rouge("rouge1"), _rouge("rouge2"), _rouge("rougeL")


def bleu(records, truth) -> float | None:
    """sacreBLEU corpus BLEU (0-100) of the generated titles against the references."""
    import sacrebleu

    judged = [r for r in records if r.reference]
    if not judged:
        return None
    return sacrebleu.corpus_bleu([r.generated for r in judged], [[r.reference for r in judged]]).score
