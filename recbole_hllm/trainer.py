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
from recbole_hllm.distributed.fsdp import (clip_mixed_grad_norm, full_state_dict, has_sharded_params, is_sharded,
                                          load_full_state_dict)
from recbole_hllm.evaluation.generation import GENERATION_METRICS, GroundTruth, TitleRecord, attach_truth, score_titles
from recbole_hllm.evaluation.u_gain import sample_rows, shuffled_u_scores
from recbole_hllm.model.schedule import JointSchedule

# DataStruct entries that hold one row per evaluated user (the rest are dataset-wide)
PER_USER_EVAL_ENTRIES = ("rec.items", "rec.topk", "rec.meanrank", "rec.score", "data.label")


class HLLMTrainer(Trainer):
    def __init__(self, config, model):
        # RecBole's ensure_dir checks, then creates: ranks starting together race on it
        os.makedirs(config["checkpoint_dir"], exist_ok=True)
        super().__init__(config, model)
        if not config["single_spec"]:
            self.saved_model_file = broadcast_object(self.saved_model_file)
            self.evaluator.evaluate = _on_every_ranks_rows(self.evaluator.evaluate)
        if self.clip_grad_norm and has_sharded_params(model):
            # torch's clip_grad_norm_ cannot mix FSDP's sharded gradients with whole ones: clip
            # right before each optimizer step instead, with the norm over both kinds
            settings, self.clip_grad_norm = dict(self.clip_grad_norm), None

            def clip_before_step(optimizer, args, kwargs) -> None:
                clip_mixed_grad_norm(model.parameters(), **settings)
            self.optimizer.register_step_pre_hook(clip_before_step)

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and has_sharded_params(self.model):  # whole tensors into the shards, on every rank
            from recbole_hllm.checkpoint import load_checkpoint

            checkpoint = load_checkpoint(model_file or self.saved_model_file, map_location="cpu")  # pickled Config
            load_full_state_dict(self.model, checkpoint["state_dict"])
            self.model.load_other_parameter(checkpoint.get("other_parameter"))
            load_best_model = False
        return super().evaluate(eval_data, load_best_model, model_file, show_progress)

    def _build_optimizer(self, **kwargs):
        """RecBole's optimizer, with Adam/AdamW switched to torch's fused kernel where every
        parameter allows it (float tensors on the CPU or CUDA). Why: RecBole builds Adam
        without ``fused``/``foreach``, and on the CPU torch then updates one tensor at a
        time; for HLLMCreator's ~70 M trainable numbers that loop took 0.48 s of a 7.5 s
        step, the fused kernel 0.05 s. The update is the same Adam."""
        optimizer = super()._build_optimizer(**kwargs)
        if type(optimizer) in (torch.optim.Adam, torch.optim.AdamW):
            params = [p for group in optimizer.param_groups for p in group["params"]]
            if all(p.device.type in ("cpu", "cuda") and p.is_floating_point() and not is_sharded(p) for p in params):
                for group in optimizer.param_groups:  # read by step(); no state exists yet
                    group["fused"] = True
        return optimizer

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
        self.schedule = JointSchedule.from_config(config)
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

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self._fitting = True
        try:
            self._user_warmup(train_data, verbose, show_progress)
            return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        finally:
            self._fitting = False

    def _user_warmup(self, train_data, verbose: bool, show_progress: bool) -> None:
        """The schedule's warm-up epochs (``start_epoch .. user_warmup_epochs - 1``: the user
        side alone, the creative and reconstruction losses off), then RecBole's loop from there.

        Why: while U is still uninformative, the creative LLM learns to write one title
        per ad and then ignores U. These epochs are not validated (or checkpointed), so
        RecBole's best-epoch selection only sees epochs in which the creative LLM trained."""
        warmup = self.schedule.warmup_epochs
        if self.start_epoch >= warmup:
            return
        for epoch_idx in range(self.start_epoch, warmup):
            start = time.time()
            loss = self._train_epoch(train_data, epoch_idx, show_progress=show_progress)
            self.train_loss_dict[epoch_idx] = sum(loss) if isinstance(loss, tuple) else loss
            if verbose:
                self.logger.info(self._generate_train_loss_output(epoch_idx, start, time.time(), loss)
                                 + " (user-side warm-up: not validated)")
        self.start_epoch = warmup

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        """RecBole's epoch, each step given its :class:`StepPlan` from the schedule."""
        if loss_func is not None:
            return super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        plans = self.schedule.plans(epoch_idx, len(train_data))
        return super()._train_epoch(train_data, epoch_idx,
                                    lambda interaction: self.model.calculate_loss(interaction, next(plans)),
                                    show_progress)

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        result = super().evaluate(eval_data, load_best_model, model_file, show_progress)
        if result is None or (self._fitting and not self.config["generate_on_valid"]):
            return result
        limit = self.config["generation_valid_limit"] if self._fitting else None
        dataset = eval_data._dataset
        start = time.perf_counter()
        rows = _creative_rows(dataset, limit)
        records = self._records(dataset, rows, self._titles(dataset, rows, rows))
        seconds = time.perf_counter() - start
        attach_truth(records, self.truth)
        result.update(score_titles(records, self.generation_metrics, self.truth))
        if not self._fitting:
            self.logger.info("generated %d titles in %.1fs", len(records), seconds)
            originals = [dataclasses.replace(r, generated=r.original) for r in records]
            result.update({f"original_{k}": v for k, v in
                           score_titles(originals, self.generation_metrics, self.truth).items()})
            shuffled = self._shuffled_u(dataset, rows, records, result)
            self.last_titles_file = self._write_titles(records, shuffled)
            self.logger.info("titles -> %s", self.last_titles_file)
        return result

    def _shuffled_u(self, dataset, rows: torch.Tensor, records: list[TitleRecord], result: dict) -> dict:
        """Write a sample of the test pairs again with another user's U (a seeded
        derangement) and add ``shuffled_*`` and ``u_gain`` to ``result``. Returns
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
        result.update(shuffled_u_scores([records[i] for i in sample], titles, self.generation_metrics, self.truth))
        self.logger.info("generated %d titles with another user's U in %.1fs: u_gain %s", len(sample),
                         time.perf_counter() - start, result.get("u_gain", "n/a (no ground truth)"))
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
        return _merge_shards(gather_objects(shard))

    def _records(self, dataset, rows: torch.Tensor, generated: list[str]) -> list[TitleRecord]:
        """One :class:`TitleRecord` per row: its title and what it is judged against."""
        feat, model = dataset.inter_feat, self.model
        seq, seq_len, items = feat[model.ITEM_SEQ][rows], feat[model.ITEM_SEQ_LEN][rows], feat[model.ITEM_ID][rows]
        creative_rows = feat[CREATIVE_INDEX][rows].tolist()
        users = dataset.id2token(dataset.uid_field, feat[dataset.uid_field][rows].numpy())
        raw_items = dataset.id2token(dataset.iid_field, items.numpy())
        originals = model.original_titles or [""] * dataset.item_num
        item_texts = model.item_encoder.item_texts
        histories = [row[:n] for row, n in zip(seq.tolist(), seq_len.tolist())]
        return [
            TitleRecord(user=str(u), item=str(i), generated=g, reference=model.creative_titles[c],
                        original=originals[int(item)], ad_text=item_texts[int(item)],
                        history=[originals[h] or item_texts[h] for h in history])
            for u, i, g, c, item, history in zip(users, raw_items, generated, creative_rows, items.tolist(),
                                                 histories)
        ]

    def _write_titles(self, records: list[TitleRecord], shuffled: dict) -> str:
        """``<checkpoint>-titles.jsonl``: one line per test pair; pairs of the shuffled-U
        sample also carry the title written from another user's U and that user."""
        path = os.path.splitext(self.saved_model_file)[0] + "-titles.jsonl"
        if rank() != 0:  # every rank holds all records; one writes them
            return path
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
        return path


def _creative_rows(dataset, limit: int | None = None) -> torch.Tensor:
    """Rows of ``dataset`` with a creative target (the first ``limit``: validation on a fixed subset)."""
    return torch.nonzero(dataset.inter_feat[CREATIVE_INDEX] >= 0).flatten()[:limit]


def _merge_shards(shards: list[list]) -> list:
    """Row-wise union of per-rank outputs that hold None where another rank generated."""
    return [next((value for value in column if value is not None), None) for column in zip(*shards)]
