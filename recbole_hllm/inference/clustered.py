"""Cluster-and-prune inference: one generation per (user cluster, ad), not per (user, ad).

Steps (HLLM-Creator, "inference at scale"):

1. embed every user (batched, no grad): U ``[N, H]``;
2. cluster U (:mod:`recbole_hllm.inference.clustering`); ``clusters=0`` keeps one
   "cluster" per user, the per-user reference;
3. score every (centroid, ad) pair with the matching head and keep the pairs the
   :class:`~recbole_hllm.inference.pruning.PruneRule` allows;
4. generate one title per kept (cluster, ad) with the centroid as U (conditioning the
   creative LLM as ``user_injection`` says: prefix, soft token or both)
   (batched, sorted by prompt length, KV cache); every user receives the title of
   its cluster, and pruned pairs keep the ad's original title (flagged).

Finished generations are appended to a parts file as they are made, so an
interrupted run resumes where it stopped; the parts file is keyed by a fingerprint
of everything that decides a title, so a changed setting never reuses stale titles.

In a multi-process run (``hllm-generate --nproc N``) each rank embeds every N-th
batch of users and generates every N-th batch of (cluster, ad) pairs, into its own
parts file (``<parts>.rank<r>``); rank 0 clusters; the pieces are gathered, so every
rank ends with the complete, ordered result. Batches are cut as in one process, so
the output is the one-process output.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from recbole_hllm.distributed.context import broadcast_object, gather_objects, rank, world_size
from recbole_hllm.errors import InvalidInputError
from recbole_hllm.inference.clustering import Clusters, cluster_users
from recbole_hllm.inference.pruning import PruneRule


@dataclass
class InferenceSettings:
    clusters: int = 32  # 0: one generation per user (the per-user reference)
    metric: str = "cosine"
    backend: str = "kmeans"
    seed: int = 0
    prune: PruneRule = field(default_factory=PruneRule)
    batch_size: int = 32
    show_progress: bool = True

    def fingerprint(self, checkpoint: str, users: list[int], items: list[int], generation: dict) -> str:
        text = json.dumps([os.path.abspath(checkpoint), self.clusters, self.metric, self.backend, self.seed,
                           self.prune.top_m, self.prune.threshold, users, items, sorted(generation.items())])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class InferenceResult:
    rows: list[dict]  # one per (user, ad): user, item, cluster, score, pruned, title
    users: list[int]  # internal ids, the row order of ``user_vecs``
    user_vecs: np.ndarray  # [len(users), H] U of each user
    clusters: Clusters
    summary: list[dict]  # one per cluster
    generations: int  # generations run in this call (resumed ones not counted)
    new_tokens: int
    seconds: float


@torch.no_grad()
def embed_users(model, histories: dict[int, list[int]], users: list[int], max_len: int,
                batch_size: int = 64, show_progress: bool = True) -> np.ndarray:
    """U ``[len(users), H]`` from each user's history (last ``max_len`` items)."""
    device = model.device
    batches = {}
    starts = range(rank() * batch_size, len(users), world_size() * batch_size)
    for start in tqdm(starts, desc="user embeddings", unit="batch", disable=not show_progress or rank() != 0):
        chunk = [histories[u][-max_len:] for u in users[start : start + batch_size]]
        seq = torch.zeros(len(chunk), max_len, dtype=torch.long)
        for row, history in enumerate(chunk):
            seq[row, : len(history)] = torch.tensor(history)
        seq_len = torch.tensor([len(h) for h in chunk])
        batches[start] = model.user_embedding(seq.to(device), seq_len.to(device)).float().cpu()
    if world_size() > 1:  # every rank needs every user's vector
        batches = {k: v for shard in gather_objects(batches) for k, v in shard.items()}
    return torch.cat([batches[start] for start in sorted(batches)]).numpy()


@torch.no_grad()
def pair_scores(model, vectors: np.ndarray, items: list[int]) -> np.ndarray:
    """Matching logits ``[len(vectors), len(items)]``."""
    device = model.device
    user_vecs = torch.from_numpy(vectors).to(device)
    item_ids = torch.tensor(items, device=device)[None].expand(len(vectors), -1)
    return model.match_score(user_vecs, item_ids).float().cpu().numpy()


def personalise(model, histories: dict[int, list[int]], pairs: list[tuple[int, int]], settings: InferenceSettings,
                max_len: int, parts_file: str | None = None, fingerprint: str = "") -> InferenceResult:
    """Titles for (user, ad) ``pairs`` (internal ids); see the module docstring."""
    if not pairs:
        raise InvalidInputError("no (user, ad) pairs to write titles for: the ad list is empty")
    start = time.perf_counter()
    if model.item_encoder.frozen:  # a collective in a multi-process run: every rank builds it here, together
        model.item_encoder.all_items()
    users = sorted({u for u, _ in pairs})
    items = sorted({i for _, i in pairs})
    user_vecs = embed_users(model, histories, users, max_len, show_progress=settings.show_progress)
    if settings.clusters:  # rank 0 clusters, so every rank has the same assignment
        clusters = broadcast_object(cluster_users(user_vecs, settings.clusters, settings.metric, settings.backend,
                                                  settings.seed) if rank() == 0 else None)
    else:
        clusters = Clusters(assignment=np.arange(len(users)), centroids=user_vecs)
    scores = pair_scores(model, clusters.centroids, items)  # [K, A]
    keep = settings.prune.keep(scores)
    user_row = {u: r for r, u in enumerate(users)}
    item_col = {i: c for c, i in enumerate(items)}
    wanted = sorted({(int(clusters.assignment[user_row[u]]), i) for u, i in pairs if keep[
        clusters.assignment[user_row[u]], item_col[i]]})
    # rank 0 reads what earlier runs left (the others may already be writing theirs)
    titles = broadcast_object(_load_parts(parts_file, fingerprint) if rank() == 0 else None)
    todo = [key for key in wanted if key not in titles]
    new_tokens = _generate(model, clusters.centroids, todo, titles, settings, parts_file, fingerprint)
    originals = model.original_titles or [""] * (max(items) + 1)
    rows = []
    for user, item in pairs:
        cluster = int(clusters.assignment[user_row[user]])
        pruned = not keep[cluster, item_col[item]]
        rows.append({"user": user, "item": item, "cluster": cluster,
                     "score": round(float(scores[cluster, item_col[item]]), 4), "pruned": bool(pruned),
                     "title": originals[item] if pruned else titles[(cluster, item)]})
    summary = cluster_summary(clusters, users, histories, rows) if settings.clusters else []
    return InferenceResult(rows, users, user_vecs, clusters, summary, len(todo), new_tokens, time.perf_counter() - start)


def _generate(model, centroids: np.ndarray, todo: list[tuple[int, int]], titles: dict, settings: InferenceSettings,
              parts_file: str | None, fingerprint: str) -> int:
    """Generate the (cluster, ad) pairs in ``todo`` into ``titles``, appending each batch to
    this rank's parts file; returns the new tokens of all ranks."""
    if not todo:
        return 0
    order = model.prompt_length_order([i for _, i in todo])
    todo = [todo[k] for k in order]
    centroid_table = torch.from_numpy(centroids).to(model.device)
    new_tokens, made = 0, {}
    generation = model.decoding_settings
    shard_rank, shard_world = model.generation_shard()
    starts = range(shard_rank * settings.batch_size, len(todo), shard_world * settings.batch_size)
    # with a sharded creative LLM every rank makes every title: rank 0 keeps the parts
    sink_path = rank_parts_file(parts_file) if shard_world > 1 or rank() == 0 else None
    sink_context = open(sink_path, "a", encoding="utf-8") if sink_path else contextlib.nullcontext()
    with sink_context as sink, tqdm(total=len(todo), desc="generations", unit="title",
                                    disable=not settings.show_progress or rank() != 0) as bar, \
            model.creative.merged_for_generation():  # LoRA merged once for every batch
        for start in starts:
            chunk = todo[start : start + settings.batch_size]
            vecs = centroid_table[torch.tensor([c for c, _ in chunk], device=model.device)]
            texts, n = model.generate_from_user_vectors(vecs, [i for _, i in chunk], **generation)
            new_tokens += n
            for (cluster, item), text in zip(chunk, texts):
                made[(cluster, item)] = text
                if sink:
                    sink.write(json.dumps({"fp": fingerprint, "cluster": cluster, "item": item, "title": text},
                                          ensure_ascii=False) + "\n")
            if sink:
                sink.flush()
            bar.update(len(chunk) * shard_world)
    shards = gather_objects((made, new_tokens)) if shard_world > 1 else [(made, new_tokens)]
    for shard_titles, _ in shards:
        titles.update(shard_titles)
    return sum(tokens for _, tokens in shards)


def rank_parts_file(parts_file: str | None) -> str | None:
    """This rank's parts file: ``parts_file`` in one process, ``<parts_file>.rank<r>`` in several."""
    if not parts_file or world_size() == 1:
        return parts_file
    return f"{parts_file}.rank{rank()}"


def all_parts_files(parts_file: str) -> list[str]:
    """The parts files any earlier run (with any number of processes) may have left."""
    folder = os.path.dirname(os.path.abspath(parts_file))
    name = os.path.basename(parts_file)
    extra = sorted(f for f in os.listdir(folder) if f.startswith(f"{name}.rank") and f[len(name) + 5:].isdigit())
    return [parts_file] + [os.path.join(folder, f) for f in extra]


def _load_parts(parts_file: str | None, fingerprint: str) -> dict:
    """Titles already generated by an interrupted run with the same fingerprint."""
    titles = {}
    if not parts_file or not os.path.isdir(os.path.dirname(os.path.abspath(parts_file))):
        return titles
    for path in all_parts_files(parts_file):
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a crash: regenerate that pair
                    continue
                if row.get("fp") == fingerprint:
                    titles[(row["cluster"], row["item"])] = row["title"]
    return titles


def cluster_summary(clusters: Clusters, users: list[int], histories: dict[int, list[int]], rows: list[dict],
                    top_items: int = 5) -> list[dict]:
    """Per cluster: size, most-clicked history items, one sample generated title."""
    sample = {}
    for row in rows:
        if not row["pruned"]:
            sample.setdefault(row["cluster"], row["title"])
    summary = []
    for cluster, size in enumerate(clusters.sizes()):
        members = [u for r, u in enumerate(users) if clusters.assignment[r] == cluster]
        clicks = Counter(i for u in members for i in histories[u])
        summary.append({"cluster": cluster, "size": int(size),
                        "top_items": [i for i, _ in clicks.most_common(top_items)],
                        "sample_title": sample.get(cluster)})
    return summary
