"""Which users, and which ads per user, the construction writes titles for.

* ``next``: the user's last ``ads_per_user`` clicked items, and a history that stops
  before the first of them. With RecBole's leave-one-out split the last item's row
  lands in test, the second-to-last in valid, earlier ones in train, so the profile
  never sees a target and HLLMCreator can train on the result directly.
* ``random``: catalogue items the user never clicked (seeded); history = all clicks.
  HLLMCreator attaches a creative row to the user's click on that ad, so these rows
  are for inference and judging (``hllm-generate --items``), not for training.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from recbole_hllm.construction.source import SourceData

STRATEGIES = ("next", "random")


@dataclass
class UserTask:
    user: str
    history: list[str]  # items shown to the profile step, oldest first
    ads: list[str]


def select_users(source: SourceData, n_users: int | None, user_ids: list[str] | None, seed: int) -> list[str]:
    """``user_ids`` as given (unknown ones are an error), else a seeded sample of
    ``n_users`` (all users when None)."""
    if user_ids:
        unknown = [u for u in user_ids if u not in source.histories]
        if unknown:
            raise ValueError(f"--user-ids: {len(unknown)} users are not in {source.name} after RecBole's "
                             f"filtering; first: {', '.join(unknown[:5])}")
        return list(dict.fromkeys(user_ids))
    users = list(source.histories)
    if n_users is None or n_users >= len(users):
        return users
    return sorted(random.Random(seed).sample(users, n_users), key=users.index)


def plan_tasks(source: SourceData, users: list[str], strategy: str, ads_per_user: int,
               history_len: int, seed: int) -> tuple[list[UserTask], list[str]]:
    """Tasks per user, and the users skipped for having too few clicks."""
    if strategy not in STRATEGIES:
        raise ValueError(f"--ads {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if ads_per_user < 1:
        raise ValueError(f"--ads-per-user must be >= 1, got {ads_per_user}")
    tasks, skipped = [], []
    for user in users:
        clicks = source.histories[user]
        if strategy == "next":
            ads = list(dict.fromkeys(clicks[-ads_per_user:]))
            history = clicks[:len(clicks) - ads_per_user]
        else:
            rng = random.Random(f"{seed}:{user}")
            seen = set(clicks)
            pool = [i for i in source.items if i not in seen]
            ads, history = rng.sample(pool, min(ads_per_user, len(pool))), clicks
        if not history or not ads:
            skipped.append(user)
            continue
        tasks.append(UserTask(user, history[-history_len:], ads))
    return tasks, skipped
