"""Factuality of a generated title against its ad (no model needed).

* ``fact_support``: per title, the share of its words (function words aside: numbers,
  names and content words) that the ad's text supports (title or description,
  case-insensitive, plural-folded); mean over titles. 1.0 = every word is grounded.
* ``fact_pass``: share of titles that pass the construction's deterministic fact check
  (``recbole_hllm/construction/factcheck.py``, rules in
  ``properties/construction/cot.yaml``): no unsupported number, name, claim word,
  superlative or demographic guess, at most ``max_added_words`` added words, and the
  ad's own words kept.
``off_facet`` (ground-truth data only) lives with the other ground-truth metrics.

The construction package is imported on first use, not with this module: the trainer
imports the metrics, and registering the models should not load data construction.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recbole_hllm.construction.factcheck import FactCheckRules


@lru_cache(maxsize=1)
def _rules() -> FactCheckRules:
    """The construction's fact-check rules (``properties/construction/cot.yaml``)."""
    from recbole_hllm.construction.factcheck import FactCheckRules
    from recbole_hllm.construction.prompts import load_settings

    return FactCheckRules.from_settings(load_settings())


def supported_share(title: str, ad_text: str) -> float | None:
    """Share of ``title``'s non-function words found in ``ad_text`` (None: no such word)."""
    from recbole_hllm.construction.factcheck import forms, normalise, vocabulary, words

    checkable = [w for w in words(title) if normalise(w) not in _rules().function_words]
    if not checkable:
        return None
    source = vocabulary(ad_text)
    return sum(bool(forms(normalise(w)) & source) for w in checkable) / len(checkable)


def fact_support(records, truth) -> float | None:
    shares = [supported_share(r.generated, f"{r.original} {r.ad_text}") for r in records]
    shares = [s for s in shares if s is not None]
    return sum(shares) / len(shares) if shares else None


def fact_pass(records, truth) -> float | None:
    from recbole_hllm.construction.factcheck import check_title

    if not records:
        return None
    return sum(not check_title(r.generated, r.original, r.ad_text, _rules()) for r in records) / len(records)
