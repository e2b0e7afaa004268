"""Which users, and which ads per user, the construction writes titles for.

* ``next``: the user's last ``ads_per_user`` clicked items, and a history that stops
  before the first of them. With RecBole's leave-one-out split the last item's row
  lands in test, the second-to-last in valid, earlier ones in train, so the profile
  never sees a target and HLLMCreator can train on the result directly.
* ``random``: catalogue items the user never clicked (seeded); history = all clicks.
* ``matching``: the unclicked items a trained checkpoint ranks highest for the user:
  an HLLMCreator checkpoint's user-ad matching head, or an HLLM checkpoint's
  next-item score; history = all clicks.

HLLMCreator attaches a creative row to the user's click on that ad, so ``random`` and
``matching`` rows are for inference and judging (``hllm-generate --items``), not for
training.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from recbole_hllm.construction.source import SourceData
from recbole_hllm.errors import InvalidInputError

STRATEGIES = ("next", "random", "matching")


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
            raise InvalidInputError(f"--user-ids: {len(unknown)} users are not in {source.name} after RecBole's "
                             f"filtering; first: {', '.join(unknown[:5])}")
        return list(dict.fromkeys(user_ids))
    users = list(source.histories)
    if n_users is None or n_users >= len(users):
        return users
    return sorted(random.Random(seed).sample(users, n_users), key=users.index)


def plan_tasks(source: SourceData, users: list[str], strategy: str, ads_per_user: int,
               history_len: int, seed: int, checkpoint: str | None = None) -> tuple[list[UserTask], list[str]]:
    """Tasks per user, and the users skipped for having too few clicks."""
    if strategy not in STRATEGIES:
        raise InvalidInputError(f"--ads {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if ads_per_user < 1:
        raise InvalidInputError(f"--ads-per-user must be >= 1, got {ads_per_user}")
    if strategy == "matching":
        if not checkpoint:
            raise InvalidInputError("--ads matching needs --checkpoint (an HLLM or HLLMCreator .pth)")
        ranked = matching_ads(checkpoint, source, users, ads_per_user)
        return [UserTask(u, source.histories[u][-history_len:], ranked[u]) for u in users], []
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


def matching_ads(checkpoint: str, source: SourceData, users: list[str], ads_per_user: int) -> dict[str, list[str]]:
    """Per user, the ``ads_per_user`` unclicked items the checkpoint scores highest."""
    import torch

    config, model, dataset = _load_ranker(checkpoint)
    to_internal = _id_mapper(dataset, checkpoint)
    user_field, item_field = dataset.uid_field, dataset.iid_field
    max_len = config["MAX_ITEM_LIST_LENGTH"]
    candidates = torch.arange(1, dataset.item_num, device=model.device)
    ranked = {}
    with torch.no_grad():
        for user in users:
            to_internal(user_field, user)
            clicked = [to_internal(item_field, i) for i in source.histories[user]]
            history = clicked[-max_len:]
            seq = torch.tensor([history], device=model.device)
            scores = _scores(model, seq, torch.tensor([len(history)], device=model.device), candidates)
            scores[torch.tensor(clicked, device=model.device) - 1] = -float("inf")  # clicked: not an ad
            top = torch.topk(scores, min(ads_per_user, len(candidates) - len(set(clicked)))).indices + 1
            ranked[user] = [str(dataset.id2token(item_field, int(i))) for i in top]
    return ranked


def _load_ranker(checkpoint: str):
    from recbole.quick_start import load_data_and_model

    import recbole_hllm  # noqa: F401
    from recbole_hllm.model.hllm import HLLM

    config, model, _, _, _, test_data = load_data_and_model(checkpoint)
    if not isinstance(model, HLLM):
        raise InvalidInputError(f"--checkpoint {checkpoint} holds a {type(model).__name__} model; --ads matching needs "
                         "an HLLM or HLLMCreator checkpoint")
    return config, model.eval(), test_data._dataset


def _id_mapper(dataset, checkpoint: str):
    def to_internal(field: str, token: str) -> int:
        mapping = dataset.field2token_id[field]
        if token not in mapping:
            raise InvalidInputError(f"{field} {token!r} is unknown to the dataset of {checkpoint}: was the checkpoint "
                             "trained on another dataset or with other filters?")
        return mapping[token]
    return to_internal


def _scores(model, item_seq, seq_len, candidates):
    """``[n_candidates]``: the matching head (HLLMCreator) or next-item cosine (HLLM)."""
    if hasattr(model, "match_score"):
        user_vec = model.user_embedding(item_seq, seq_len)
        return model.match_score(user_vec, candidates[None]).float()[0]
    return model.full_sort_predict({model.ITEM_SEQ: item_seq, model.ITEM_SEQ_LEN: seq_len}).float()[0, 1:]
