"""Which (cluster, ad) pairs are worth a generation.

The matching head scores every (centroid, ad) pair; a pair is kept when it is among
the ``top_m`` best-scored ads of its cluster and/or its score reaches ``threshold``
(both rules given: a pair must pass both). Pairs not kept keep the ad's original title.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recbole_hllm.errors import InvalidInputError


@dataclass(frozen=True)
class PruneRule:
    top_m: int | None = None  # keep the M best-scored ads per cluster
    threshold: float | None = None  # keep pairs whose matching logit is >= threshold

    def __post_init__(self):
        if self.top_m is not None and self.top_m < 1:
            raise InvalidInputError(f"prune top_m = {self.top_m}: expected an int >= 1 (or none)")

    @property
    def active(self) -> bool:
        return self.top_m is not None or self.threshold is not None

    def keep(self, scores: np.ndarray) -> np.ndarray:
        """``scores`` ``[K, A]`` -> bool mask ``[K, A]`` of the pairs to generate."""
        keep = np.ones(scores.shape, dtype=bool)
        if self.top_m is not None and self.top_m < scores.shape[1]:
            # stable sort: ties keep the earlier ad, so the rule is deterministic
            order = np.argsort(-scores, axis=1, kind="stable")[:, : self.top_m]
            top = np.zeros(scores.shape, dtype=bool)
            np.put_along_axis(top, order, True, axis=1)
            keep &= top
        if self.threshold is not None:
            keep &= scores >= self.threshold
        return keep
