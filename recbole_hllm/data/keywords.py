"""Whole-word keyword matching: which named keyword groups (ad facets) a text mentions.

One rule for the data generator and for the metrics that judge titles (interest-hit,
off-facet), so that what the data calls a "price" title is what the metric counts. A
keyword side that is a letter or digit needs a word boundary there; a side that is a
symbol needs none, so ``$`` matches in "under $50" and ``% off`` in "30% off".
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable, Mapping


@lru_cache(maxsize=None)
def keyword_pattern(keyword: str) -> re.Pattern:
    """``keyword`` (lower case) as a whole word of a lower-cased text."""
    left = r"(?<![a-z0-9])" if keyword[0].isalnum() else ""
    right = r"(?![a-z0-9])" if keyword[-1].isalnum() else ""
    return re.compile(left + re.escape(keyword) + right)


def groups_in_text(text: str, keywords: Mapping[str, Iterable[str]]) -> set[str]:
    """The names in ``keywords`` (name -> lower-case keywords) one of whose keywords occurs
    in ``text`` (case-insensitive, whole words)."""
    lowered = text.lower()
    return {name for name, words in keywords.items() if any(keyword_pattern(w).search(lowered) for w in words)}
