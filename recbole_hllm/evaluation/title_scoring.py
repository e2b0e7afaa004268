"""HLLMCreator's titles at evaluation time: written for every evaluated (user, ad) row and scored.

At test time (and at validation when ``generate_on_valid``) a title is generated for
every evaluated row with a creative target; the named ``generation_metrics`` join
RecBole's result dict (:class:`~recbole_hllm.trainer.HLLMCreatorTrainer`), so they print
with Recall/NDCG and ``valid_metric`` may name one. At test time the original titles
are scored too (``original_*``), a sample of the rows is written again from another
user's U (``shuffled_*`` and ``u_gain``, :mod:`.u_gain`), and the titles are written
next to the checkpoint (:func:`titles_file`).

Why not in the trainer: the trainer decides when to evaluate; what a title is judged
against (the reference, the original, the user's history, the ground truth) is
evaluation's business, and the trainer module then needs nothing beyond the model and
the metrics.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import torch

from recbole_hllm.data.creative_dataset import CREATIVE_INDEX
from recbole_hllm.distributed.context import gather_objects, rank
from recbole_hllm.evaluation.generation import GroundTruth, TitleRecord, attach_truth, score_titles
from recbole_hllm.evaluation.u_gain import sample_rows, shuffled_u_scores


def titles_file(checkpoint: str) -> str:
    """``<checkpoint>-titles.jsonl``: where a test run's titles are written."""
    return os.path.splitext(checkpoint)[0] + "-titles.jsonl"


class TitleScoring:
    """Generates and scores the titles of one evaluation pass of ``model`` (an HLLMCreator)."""

    def __init__(self, config, model, logger):
        self.config, self.model, self.logger = config, model, logger
        self.device = config["device"]
        self.metrics = [m.lower() for m in config["generation_metrics"]]
        self.truth = GroundTruth.load(config["data_path"], config["dataset"])

    def validation_scores(self, dataset, limit: int | None) -> dict:
        """The metrics of the titles for the first ``limit`` rows (a fixed subset)."""
        _, _, scores = self._scored(dataset, creative_rows(dataset, limit))
        return scores

    def test_scores(self, dataset, titles_path: str, limit: int | None = None) -> dict:
        """The metrics of every row's title, of the original titles (``original_*``) and of
        titles written from another user's U (``shuffled_*``, ``u_gain``); the titles go to
        ``titles_path``. ``limit``: the first N rows only (benchmarks that screen settings)."""
        rows = creative_rows(dataset, limit)
        records, seconds, scores = self._scored(dataset, rows)
        self.logger.info("generated %d titles in %.1fs", len(records), seconds)
        originals = [dataclasses.replace(r, generated=r.original) for r in records]
        scores.update({f"original_{k}": v for k, v in score_titles(originals, self.metrics, self.truth).items()})
        shuffled = self._shuffled_u(dataset, rows, records, scores)
        write_titles(titles_path, records, shuffled)
        self.logger.info("titles -> %s", titles_path)
        return scores

    def _scored(self, dataset, rows: torch.Tensor) -> tuple[list[TitleRecord], float, dict]:
        """(records, seconds spent writing them, their scores) for the titles of ``rows``."""
        start = time.perf_counter()
        records = self._records(dataset, rows, self._titles(dataset, rows, rows))
        seconds = time.perf_counter() - start
        attach_truth(records, self.truth)
        return records, seconds, score_titles(records, self.metrics, self.truth)

    def _shuffled_u(self, dataset, rows: torch.Tensor, records: list[TitleRecord], scores: dict) -> dict:
        """Write a sample of the test pairs again with another user's U (a seeded
        derangement) and add ``shuffled_*`` and ``u_gain`` to ``scores``. Returns
        {record position: (donor record position, title)} for the titles file."""
        size = self.config["shuffled_u_pairs"]
        if size == 0 or len(records) < 2:
            return {}
        if not self.model.has_user_signal:  # the ablation: another user's titles would be the same ones
            self.logger.info("use_user_embedding = False: no U to shuffle, shuffled_* and u_gain not computed")
            return {}
        start = time.perf_counter()
        sample, donors = sample_rows(len(records), size, self.config["seed"] or 0)
        titles = self._titles(dataset, rows[sample], rows[donors])
        scores.update(shuffled_u_scores([records[i] for i in sample], titles, self.metrics, self.truth))
        self.logger.info("generated %d titles with another user's U in %.1fs: u_gain %s", len(sample),
                         time.perf_counter() - start, scores.get("u_gain", "n/a (no ground truth)"))
        return {int(i): (int(d), t) for i, d, t in zip(sample, donors, titles)}

    @torch.no_grad()
    def _titles(self, dataset, target_rows: torch.Tensor, history_rows: torch.Tensor) -> list[str]:
        """Titles for the ads of ``target_rows`` written from the histories (hence the U)
        of ``history_rows`` (the same rows: each user's own U), and from those rows' user
        words where the prompt has them (``creative_user_text``)."""
        feat, model = dataset.inter_feat, self.model
        seq = feat[model.ITEM_SEQ][history_rows].to(self.device)
        seq_len = feat[model.ITEM_SEQ_LEN][history_rows].to(self.device)
        items = feat[model.ITEM_ID][target_rows].to(self.device)
        user_texts = model.user_texts(feat[CREATIVE_INDEX][history_rows].tolist())
        shard, _ = model.generate_titles(seq, seq_len, items, shard=model.generation_shard(), user_texts=user_texts)
        return merge_shards(gather_objects(shard))

    def _records(self, dataset, rows: torch.Tensor, generated: list[str]) -> list[TitleRecord]:
        """One :class:`TitleRecord` per row: its title and what it is judged against."""
        feat, model = dataset.inter_feat, self.model
        seq, seq_len, items = feat[model.ITEM_SEQ][rows], feat[model.ITEM_SEQ_LEN][rows], feat[model.ITEM_ID][rows]
        creative_ids = feat[CREATIVE_INDEX][rows].tolist()
        users = dataset.id2token(dataset.uid_field, feat[dataset.uid_field][rows].numpy())
        raw_items = dataset.id2token(dataset.iid_field, items.numpy())
        originals = model.original_titles or [""] * dataset.item_num
        item_texts = model.item_encoder.item_texts
        histories = [row[:n] for row, n in zip(seq.tolist(), seq_len.tolist())]
        return [
            TitleRecord(user=str(u), item=str(i), generated=g, reference=model.creative_titles[c],
                        original=originals[int(item)], ad_text=item_texts[int(item)],
                        history=[originals[h] or item_texts[h] for h in history])
            for u, i, g, c, item, history in zip(users, raw_items, generated, creative_ids, items.tolist(),
                                                 histories)
        ]


def write_titles(path: str, records: list[TitleRecord], shuffled: dict) -> None:
    """One JSON line per test pair (rank 0 writes; every rank holds all records); pairs of
    the shuffled-U sample also carry the title written from another user's U and that user."""
    if rank() != 0:
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for pos, r in enumerate(records):
            row = {"user": r.user, "item": r.item, "original": r.original, "reference": r.reference,
                   "generated": r.generated, "truth_facet": r.truth_facet}
            if pos in shuffled:
                donor, title = shuffled[pos]
                row.update(shuffled_u_user=records[donor].user, shuffled_u_generated=title)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def creative_rows(dataset, limit: int | None = None) -> torch.Tensor:
    """Rows of ``dataset`` with a creative target (the first ``limit``: validation on a fixed subset)."""
    return torch.nonzero(dataset.inter_feat[CREATIVE_INDEX] >= 0).flatten()[:limit]


def merge_shards(shards: list[list]) -> list:
    """Row-wise union of per-rank outputs that hold None where another rank generated."""
    return [next((value for value in column if value is not None), None) for column in zip(*shards)]
