"""Trainers: RecBole's Trainer made exact in multi-process runs, and HLLMCreator's joint training.

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

:class:`HLLMCreatorTrainer`: per-part learning rates, the schedule's user-side warm-up and
loss plan per step, and ``evaluate``, which adds the generated titles' metrics to RecBole's
result at test time (and at validation when ``generate_on_valid``); what is generated
and how it is scored is :mod:`recbole_hllm.evaluation.title_scoring`.
"""
from __future__ import annotations

import copy
import os
import time

import torch
from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_hllm.config import check_valid_metric
from recbole_hllm.distributed.context import barrier, broadcast_object, gather_objects, rank
from recbole_hllm.distributed.fsdp import (clip_mixed_grad_norm, full_state_dict, has_sharded_params, is_sharded,
                                          load_full_state_dict)
from recbole_hllm.evaluation.generation import GENERATION_METRICS
from recbole_hllm.evaluation.title_scoring import TitleScoring, titles_file
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
        check_valid_metric(config, GENERATION_METRICS)
        self.title_scoring = TitleScoring(config, model, self.logger)
        self.schedule = JointSchedule.from_config(config)
        self._fitting = False
        self.last_titles_file = None

    # parameter-name prefix -> config key of that group's learning rate (null: learning_rate)
    LR_GROUPS = {"creative.": "creative_learning_rate",
                 "user_to_creative.": "projector_learning_rate", "user_to_profile.": "projector_learning_rate"}

    def _build_optimizer(self, **kwargs):
        """Give the creative LLM's trainable weights (e.g. LoRA adapters) their own
        ``creative_learning_rate`` and the U -> creative-LLM conditioners (soft token and/or
        prefix) ``projector_learning_rate``; everything else keeps ``learning_rate``. Why: a
        LoRA adapter and a freshly initialised conditioner need far larger steps than the pretrained user LLM does."""
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
        if self._fitting:
            result.update(self.title_scoring.validation_scores(eval_data._dataset, self.config["generation_valid_limit"]))
        else:
            path = titles_file(self.saved_model_file)
            result.update(self.title_scoring.test_scores(eval_data._dataset, path))
            self.last_titles_file = path
        return result
