"""How much next-item signal does ads-synth hold? Test-item ranking by the hidden facets.

    python -m benchmarks.ads_synth_ceiling [--seed 7]

ads-synth clicks carry no item-to-item order: a click goes, with a fixed probability,
to a random unclicked ad with the user's current top or second facet, otherwise to any
unclicked ad. So the best any recommender can do is to know the user's facets. This
ranks each user's unclicked ads by the best rank (in the user's hidden final facet
ranking) of the facets an ad carries, ties broken at random, and scores the last
click as RecBole's leave-one-out test does (full ranking, history masked). It uses the
ground truth no model sees, so it is a ceiling for the recommendation metrics of
``benchmarks.recsys --dataset ads-synth``, next to a random ranking's expectation.
It also guesses each test title's facet from the clicks alone (the ad's facet the
recency-weighted clicks favour): the interest-hit a title model could reach from U.
Writes results/ads_synth_ceiling.json.
"""
from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

from recbole_hllm.data.synthetic_ads import build

ROOT = Path(__file__).resolve().parents[1]


def rank_of_target(user, ads: dict, rng: random.Random) -> tuple[int, int]:
    """(0-based rank of the test item among the unclicked ads, number of candidates)."""
    history, target = user.clicked_items[:-1], user.clicked_items[-1]
    seen = set(history)
    facet_rank = {facet: r for r, facet in enumerate(user.final_ranking)}
    candidates = [item_id for item_id in ads if item_id not in seen]
    ordered = sorted(candidates, key=lambda i: (min(facet_rank[f] for f in ads[i]), rng.random()))
    return ordered.index(target), len(candidates)


def facet_from_clicks(history: list[str], ads: dict, candidates: set[str], decay: float) -> str:
    """The facet of ``candidates`` (an ad's facets) that the clicks favour most: each click
    shares a weight ``decay ** age`` among the facets of the ad clicked."""
    score = dict.fromkeys(candidates, 0.0)
    for age, item_id in enumerate(reversed(history)):
        for facet in ads[item_id] & candidates:
            score[facet] += decay ** age / len(ads[item_id])
    return max(sorted(candidates), key=score.__getitem__)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7, help="the generator's seed (the shipped dataset: 7)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "results" / "ads_synth_ceiling.json"))
    args = parser.parse_args(argv)

    data = build(seed=args.seed)
    ads = {ad.item_id: {sp.facet for sp in ad.selling_points} for ad in data.ads}
    rng = random.Random(0)
    recall = ndcg = random_recall = random_ndcg = 0.0
    for user in data.users:
        rank, n_candidates = rank_of_target(user, ads, rng)
        if rank < args.k:
            recall += 1
            ndcg += 1 / math.log2(rank + 2)
        random_recall += args.k / n_candidates
        random_ndcg += sum(1 / math.log2(r + 2) for r in range(args.k)) / n_candidates
    n = len(data.users)
    k = args.k
    truth = {user.user_id: min(ads[user.clicked_items[-1]], key=user.final_ranking.index) for user in data.users}
    from_clicks = {decay: sum(facet_from_clicks(list(u.clicked_items[:-1]), ads, ads[u.clicked_items[-1]], decay)
                              == truth[u.user_id] for u in data.users) / n for decay in (1.0, 0.97, 0.93)}
    result = {"dataset": "ads-synth", "seed": args.seed, "users": n,
              f"facet_oracle_recall@{k}": round(recall / n, 4), f"facet_oracle_ndcg@{k}": round(ndcg / n, 4),
              f"random_recall@{k}": round(random_recall / n, 4), f"random_ndcg@{k}": round(random_ndcg / n, 4),
              # the test title's facet guessed from the clicks alone (recency-weighted facet counts):
              # what a title model reading the history could reach on interest-hit
              "test_facet_from_clicks": {str(d): round(acc, 4) for d, acc in from_clicks.items()}}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
