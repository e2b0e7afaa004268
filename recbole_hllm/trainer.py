"""Trainers: RecBole's Trainer made exact in multi-process runs, and HLLMCreator's title generation.

:class:`HLLMTrainer` (HLLM, and the base of HLLMCreator's) differs from RecBole's
``Trainer`` only where several processes train together:

* the checkpoint name is rank 0's (RecBole stamps it with each rank's own clock);
* evaluation gathers every rank's rankings before computing the metrics, so they are
  the metrics one process would compute (RecBole averages per-rank results weighted
  by a count of batches, and its sampler repeats users to even the shards);
* checkpoints are written by rank 0 only, atomically (temporary file, then rename), with
  the other ranks waiting, so none reads a half-written best model; the saved config
  says single process, so ``load_data_and_model`` reads it in one process.

In one process it behaves as RecBole's Trainer, save for the atomic write.

:class:`HLLMCreatorTrainer`: only ``fit`` (to know validation from test) and ``evaluate`` differ. At test time (and
at validation when ``generate_on_valid``) titles are generated for every evaluated
(user, ad) row with a creative target; the named ``generation_metrics`` join RecBole's
result dict, so they print with Recall/NDCG and ``valid_metric`` may name one. Test
titles are written next to the checkpoint as ``<checkpoint>-titles.jsonl``.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import time

import torch
from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_hllm.data.creative_dataset import CREATIVE_INDEX
from recbole_hllm.distributed.context import barrier, broadcast_object, gather_objects, rank
from recbole_hllm.distributed.fsdp import full_state_dict, has_sharded_params, is_sharded, load_full_state_dict
from recbole_hllm.evaluation.generation import GENERATION_METRICS, GroundTruth, TitleRecord, attach_truth, score_titles


# DataStruct entries that hold one row per evaluated user (the rest are dataset-wide)
PER_USER_EVAL_ENTRIES = ("rec.items", "rec.topk", "rec.meanrank", "rec.score", "data.label")


class HLLMTrainer(Trainer):
    def __init__(self, config, model):
        super().__init__(config, model)
        if not config["single_spec"]:
            self.saved_model_file = broadcast_object(self.saved_model_file)
            self.evaluator.evaluate = _on_every_ranks_rows(self.evaluator.evaluate)

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and has_sharded_params(self.model):  # whole tensors into the shards, on every rank
            checkpoint = torch.load(model_file or self.saved_model_file, map_location="cpu", weights_only=False)
            load_full_state_dict(self.model, checkpoint["state_dict"])  # our own checkpoint (pickled Config)
            self.model.load_other_parameter(checkpoint.get("other_parameter"))
            load_best_model = False
        return super().evaluate(eval_data, load_best_model, model_file, show_progress)

    def _map_reduce(self, result, num_sample):
        """The evaluator already saw every rank's rows: its result is the global one."""
        return result

    def sync_grad_loss(self):
        """RecBole's zero that touches every parameter (so DDP sees each one used), minus
        the FSDP-sharded ones, which DDP ignores and which cannot mix with plain tensors."""
        return sum((p.sum() * 0 for p in self.model.parameters() if not is_sharded(p)), torch.zeros(()))

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        path = kwargs.pop("saved_model_file", self.saved_model_file)
        model_state, optimizer_state = full_state_dict(self.model, self.optimizer)  # all ranks (FSDP: collective)
        if rank() == 0:
            state = {
                "config": _single_process_config(self.config), "epoch": epoch, "cur_step": self.cur_step,
                "best_valid_score": self.best_valid_score, "state_dict": model_state,
                "other_parameter": self.model.other_parameter(), "optimizer": optimizer_state,
            }
            tmp = f"{path}.tmp"
            torch.save(state, tmp, pickle_protocol=4)
            os.replace(tmp, path)
            if verbose:
                self.logger.info(set_color("Saving current", "blue") + f": {path}")
        barrier()


def _single_process_config(config):
    """A copy of ``config`` that ``load_data_and_model`` can use in one process."""
    if config["single_spec"]:
        return config
    saved = copy.copy(config)
    saved.final_config_dict = {**config.final_config_dict, "single_spec": True, "local_rank": 0,
                               "creative_llm_fsdp": False}
    for key in ("world_size", "nproc", "offset", "ip", "port"):
        saved.final_config_dict.pop(key, None)
    return saved


def _on_every_ranks_rows(evaluate):
    """Wrap ``Evaluator.evaluate(struct)``: first replace this rank's per-user rows by all ranks' rows."""
    def evaluate_all(struct):
        for name in PER_USER_EVAL_ENTRIES:
            if name in struct:
                struct[name] = torch.cat([part.to(struct[name].device) for part in gather_objects(struct[name].cpu())])
        return evaluate(struct)

    return evaluate_all


class HLLMCreatorTrainer(HLLMTrainer):
    def __init__(self, config, model):
        super().__init__(config, model)
        self.generation_metrics = [m.lower() for m in config["generation_metrics"]]
        if self.valid_metric in GENERATION_METRICS and not config["generate_on_valid"]:
            raise ValueError(f"valid_metric = {config['valid_metric']!r} is a generation metric: "
                             "set generate_on_valid: True (titles are then generated at every validation)")
        self.truth = GroundTruth.load(config["data_path"], config["dataset"])
        self._fitting = False
        self.last_titles_file = None

    # parameter-name prefix -> config key of that group's learning rate (null: learning_rate)
    LR_GROUPS = {"creative.": "creative_learning_rate",
                 "user_to_creative.": "projector_learning_rate", "user_to_profile.": "projector_learning_rate"}

    def _build_optimizer(self, **kwargs):
        """Give the creative LLM's trainable weights (e.g. LoRA adapters) their own
        ``creative_learning_rate`` and the soft-token projectors ``projector_learning_rate``;
        everything else keeps ``learning_rate``. Why: a LoRA adapter and a freshly
        initialised projector need far larger steps than the pretrained user LLM does."""
        lrs = {key: self.config[key] for key in set(self.LR_GROUPS.values())}
        if "params" in kwargs or all(lr is None for lr in lrs.values()):
            return super()._build_optimizer(**kwargs)
        groups = {}
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                key = next((k for prefix, k in self.LR_GROUPS.items() if name.startswith(prefix)), None)
                lr = lrs.get(key) if key else None
                groups.setdefault(lr, []).append(param)
        params = [{"params": ps, **({"lr": lr} if lr is not None else {})} for lr, ps in groups.items()]
        return super()._build_optimizer(params=params, **kwargs)

    def _generate_train_loss_output(self, epoch_idx, s_time, e_time, losses):
        """RecBole logs a loss tuple as train_loss1..N; name each part instead."""
        text = super()._generate_train_loss_output(epoch_idx, s_time, e_time, losses)
        if isinstance(losses, tuple):
            for idx, name in reversed(list(enumerate(self.model.active_losses, start=1))):
                text = text.replace(f"train_loss{idx}", f"{name}_loss")
        return text

    def fit(self, *args, **kwargs):
        self._fitting = True
        try:
            return super().fit(*args, **kwargs)
        finally:
            self._fitting = False

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        result = super().evaluate(eval_data, load_best_model, model_file, show_progress)
        if result is None or (self._fitting and not self.config["generate_on_valid"]):
            return result
        limit = self.config["generation_valid_limit"] if self._fitting else None
        records, seconds = self._generate_for(eval_data._dataset, show_progress, limit)
        attach_truth(records, self.truth)
        result.update(score_titles(records, self.generation_metrics, self.truth))
        if not self._fitting:
            originals = [dataclasses.replace(r, generated=r.original) for r in records]
            result.update({f"original_{k}": v for k, v in
                           score_titles(originals, self.generation_metrics, self.truth).items()})
            self.last_titles_file = self._write_titles(records)
            self.logger.info("generated %d titles in %.1fs -> %s", len(records), seconds, self.last_titles_file)
        return result

    @torch.no_grad()
    def _generate_for(self, dataset, show_progress: bool, limit: int | None = None) -> tuple[list[TitleRecord], float]:
        """Generate a title for every row of ``dataset`` that has a creative target
        (the first ``limit`` of them when given: validation on a fixed subset)."""
        start = time.perf_counter()
        feat = dataset.inter_feat
        rows = torch.nonzero(feat[CREATIVE_INDEX] >= 0).flatten()[:limit]
        if len(rows) == 0:
            return [], 0.0
        model = self.model
        seq = feat[model.ITEM_SEQ][rows].to(self.device)
        seq_len = feat[model.ITEM_SEQ_LEN][rows].to(self.device)
        items = feat[model.ITEM_ID][rows].to(self.device)
        shard, _ = model.generate_titles(seq, seq_len, items, shard=model.generation_shard())
        generated = _merge_shards(gather_objects(shard))
        creative_rows = feat[CREATIVE_INDEX][rows].tolist()
        users = dataset.id2token(dataset.uid_field, feat[dataset.uid_field][rows].numpy())
        raw_items = dataset.id2token(dataset.iid_field, items.cpu().numpy())
        originals = model.original_titles or [""] * dataset.item_num
        item_texts = model.item_encoder.item_texts
        histories = [row[:n] for row, n in zip(seq.tolist(), seq_len.tolist())]
        records = [
            TitleRecord(user=str(u), item=str(i), generated=g, reference=model.creative_titles[c],
                        original=originals[int(item)], ad_text=item_texts[int(item)],
                        history=[originals[h] or item_texts[h] for h in history])
            for u, i, g, c, item, history in zip(users, raw_items, generated, creative_rows, items.tolist(),
                                                 histories)
        ]
        return records, time.perf_counter() - start

    def _write_titles(self, records: list[TitleRecord]) -> str:
        path = os.path.splitext(self.saved_model_file)[0] + "-titles.jsonl"
        if rank() != 0:  # every rank holds all records; one writes them
            return path
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps({"user": r.user, "item": r.item, "original": r.original,
                                    "reference": r.reference, "generated": r.generated,
                                    "truth_facet": r.truth_facet}, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
        return path


def _merge_shards(shards: list[list]) -> list:
    """Row-wise union of per-rank outputs that hold None where another rank generated."""
    return [next((value for value in column if value is not None), None) for column in zip(*shards)]
