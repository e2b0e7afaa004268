"""Does the model use U? Titles written with each user's own U against another user's.

A creative LLM that ignores U writes the same title whatever U it gets, and so scores
the same interest-hit with a shuffled U; one that reads U hits the user's interests
more often with their own. So every test run also writes a sample of the test pairs
with a seeded derangement of U over the sampled rows (each row gets another row's U,
never its own) and reports ``shuffled_<metric>`` for the generation metrics and

    u_gain = interest_hit(own U) - interest_hit(shuffled U), on the same sampled pairs.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from recbole_hllm.evaluation.generation import TitleRecord, score_titles


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of ``range(n)`` with no fixed point (Sattolo's algorithm: one
    random cycle through all n), so no row keeps its own U. ``n >= 2``."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 rows, got {n}")
    perm = np.arange(n)
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))  # j < i: i never stays in place
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def sample_rows(n_rows: int, size: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(sampled row positions in order, donor position for each): ``size`` rows (None: all)."""
    rng = np.random.default_rng(seed)
    sample = np.arange(n_rows) if size is None or size >= n_rows else np.sort(rng.choice(n_rows, size, replace=False))
    return sample, sample[derangement(len(sample), rng)]


def shuffled_u_scores(own: list[TitleRecord], shuffled_titles: list[str], metrics, truth) -> dict[str, float]:
    """``shuffled_<metric>`` for ``metrics`` and ``u_gain`` (when interest_hit can be scored).

    ``own``: the sampled rows' records with their own-U titles; ``shuffled_titles``: the
    same rows' titles written from their donors' U."""
    shuffled = [dataclasses.replace(r, generated=t) for r, t in zip(own, shuffled_titles)]
    result = {f"shuffled_{name}": value for name, value in score_titles(shuffled, metrics, truth).items()}
    own_hit = score_titles(own, ["interest_hit"], truth).get("interest_hit")
    shuffled_hit = score_titles(shuffled, ["interest_hit"], truth).get("interest_hit")
    if own_hit is not None and shuffled_hit is not None:
        result.setdefault("shuffled_interest_hit", shuffled_hit)
        result["u_gain"] = round(own_hit - shuffled_hit, 4)
    return result
