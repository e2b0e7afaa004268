"""Deterministic factual-consistency check of a rewritten ad title.

The LLM verdict can be fooled or lazy, so every kept title must also pass this
check, which needs no model and says exactly which word failed. A word of the new
title is *supported* when the ad's title or description contains it (case-insensitive,
light plural folding). An unsupported word is rejected when it

* holds a digit (a price, a percentage, a year, a quantity),
* is a capitalised name (not the first word; skipped when the title is in Title Case,
  where capitals say nothing),
* is a claim word (``fact_check.claim_words`` in ``properties/construction/cot.yaml``)
  or a superlative ending in ``-est``,
* guesses the user's age, gender or location (``fact_check.demographic_words``).

Words that carry no claim ("for", "fans", "thrilling") may be added, which is what
personalisation needs, but at most ``max_added_words`` words not in the original title;
and the new title must keep ``min_original_share`` of the original title's words
(function words aside), so the ad stays about its own product.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’&.%+\-]*")


@dataclass(frozen=True)
class FactCheckRules:
    claim_words: frozenset
    demographic_words: frozenset
    superlative_exceptions: frozenset
    max_added_words: int
    function_words: frozenset = frozenset()
    min_original_share: float = 0.0

    @classmethod
    def from_settings(cls, settings: dict) -> "FactCheckRules":
        rules = settings["fact_check"]
        def lower(key):
            return frozenset(str(w).lower() for w in rules.get(key, []))

        return cls(lower("claim_words"), lower("demographic_words"), lower("superlative_exceptions"),
                   int(settings["max_added_words"]), lower("function_words"),
                   float(rules.get("min_original_share", 0.0)))


def words(text: str) -> list[str]:
    """Words as written (trailing dots and apostrophes stripped)."""
    return [w.rstrip(".'’-") for w in _WORD.findall(text) if w.rstrip(".'’-")]


def normalise(word: str) -> str:
    word = word.lower().replace("’", "'")
    return word.removesuffix("'s")


def forms(word: str) -> set[str]:
    """The word and its singular guesses, so "films" is supported by "film"."""
    forms = {word}
    if len(word) > 3 and word.endswith("ies"):
        forms.add(word[:-3] + "y")
    if len(word) > 3 and word.endswith("es"):
        forms.add(word[:-2])
    if len(word) > 2 and word.endswith("s"):
        forms.add(word[:-1])
    return forms


def vocabulary(*texts: str) -> set[str]:
    vocab = set()
    for text in texts:
        for w in words(text):
            vocab |= forms(normalise(w))
            vocab |= {normalise(part) for part in re.split(r"[-/]", w) if part}
    return vocab


def _is_title_case(title_words: list[str]) -> bool:
    long_words = [w for w in title_words if len(w) >= 4 and w[0].isalpha()]
    return bool(long_words) and sum(w[0].isupper() for w in long_words) / len(long_words) >= 0.6


def check_title(new_title: str, original_title: str, description: str, rules: FactCheckRules) -> list[str]:
    """Reasons the new title is not supported by the ad (empty list: it passes)."""
    new_words = words(new_title)
    if not new_words:
        return ["empty title"]
    source = vocabulary(original_title, description)
    title_case = _is_title_case(new_words)
    reasons = []
    for position, word in enumerate(new_words):
        norm = normalise(word)
        if forms(norm) & source or all(forms(p) & source for p in re.split(r"[-/]", norm) if p):
            continue
        reason = _unsupported_reason(word, norm, position, title_case, rules)
        if reason:
            reasons.append(reason)
    dropped, original = _dropped_words(new_words, original_title, rules.function_words)
    if original and (len(original) - len(dropped)) / len(original) < rules.min_original_share:
        reasons.append(f"keeps {len(original) - len(dropped)} of the original title's {len(original)} words "
                       f"(at least {rules.min_original_share:.0%}); dropped: {', '.join(dropped[:8])}")
    added = _added_words(new_words, original_title)
    if len(added) > rules.max_added_words:
        reasons.append(f"adds {len(added)} words to the original title (at most {rules.max_added_words}): "
                       + ", ".join(added[:8]))
    return reasons


def _unsupported_reason(word: str, norm: str, position: int, title_case: bool, rules: FactCheckRules) -> str | None:
    if any(ch.isdigit() for ch in word):
        return f"unsupported number {word!r}"
    if norm in rules.demographic_words:
        return f"guesses age, gender or location: {word!r}"
    if norm in rules.claim_words:
        return f"unsupported claim word {word!r}"
    if len(norm) > 5 and norm.endswith("est") and norm not in rules.superlative_exceptions:
        return f"unsupported superlative {word!r}"
    if position > 0 and not title_case and word[0].isupper() and norm not in rules.function_words:
        return f"unsupported name {word!r}"
    return None


def _dropped_words(new_words: list[str], original_title: str, function_words: frozenset):
    """The original title's content words missing from the new title, and all of them."""
    new_vocab = vocabulary(" ".join(new_words))
    original = [w for w in words(original_title.replace("/", " ")) if normalise(w) not in function_words]
    return [w for w in original if not forms(normalise(w)) & new_vocab], original


def _added_words(new_words: list[str], original_title: str) -> list[str]:
    original = vocabulary(original_title)
    return [w for w in new_words if not forms(normalise(w)) & original]
