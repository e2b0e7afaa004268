"""The losses, as pure functions of tensors: next-item InfoNCE and full softmax on cosine
similarities (HLLM's recipe), user-ad matching and the symmetric (CLIP-style) alignment.

Each returns a :class:`LossSum` (the sum over its items and their count), not a mean:
the mean is taken by the caller, over this process's items (:meth:`LossSum.mean`) or
over every process's (:func:`recbole_hllm.distributed.context.global_means`, in the
models' ``calculate_loss``), so no loss holds a collective of its own. Losses that need
every process's rows (shared negatives, in-batch negatives) take them as arguments.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn



@dataclass(frozen=True)
class LossSum:
    """A loss summed over ``count`` items (positions, rows, tokens)."""

    total: torch.Tensor
    count: torch.Tensor | int | float

    def mean(self) -> torch.Tensor:
        """The mean over these items (0 when there are none)."""
        count = torch.as_tensor(self.count, dtype=torch.float32, device=self.total.device)
        return self.total / count.clamp(min=1)


class LogitScale(nn.Module):
    """Learnable temperature as in CLIP/HLLM: init log(1/0.07), exp clamped to ``max``."""

    def __init__(self, init: float, max_value: float):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(init)))
        self.max_log = math.log(max_value)

    def forward(self) -> torch.Tensor:
        return self.log_scale.clamp(max=self.max_log).exp()


def sampled_infonce(predictions, positives, positive_ids, negatives, negative_ids, scale, mask_threshold):
    """InfoNCE with shared sampled negatives.

    Args:
        predictions: ``[P, H]`` predicted next-item embeddings.
        positives: ``[P, H]`` embeddings of the true next items, ids ``positive_ids`` [P].
        negatives: ``[K, H]`` sampled item embeddings, ids ``negative_ids`` [K].
        scale: scalar logit scale.
        mask_threshold: a negative whose cosine to the positive exceeds this (or that is
            the positive item itself) is masked out, as HLLM does.
    """
    predictions = F.normalize(predictions, dim=-1)
    positives = F.normalize(positives, dim=-1)
    negatives = F.normalize(negatives, dim=-1)
    pos_logits = (predictions * positives).sum(-1, keepdim=True) * scale  # [P, 1]
    neg_logits = predictions @ negatives.T * scale  # [P, K]
    with torch.no_grad():
        too_close = (positives @ negatives.T) > mask_threshold
        too_close |= positive_ids[:, None] == negative_ids[None, :]
    # mask after scaling: -inf * d(scale) would make the scale's gradient NaN
    neg_logits = neg_logits.masked_fill(too_close, float("-inf"))
    logits = torch.cat([pos_logits, neg_logits], dim=1)
    labels = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
    return LossSum(F.cross_entropy(logits, labels, reduction="sum"), len(logits))


def full_softmax(predictions, item_table, target_ids, scale):
    """Cross-entropy over every item: ``[P, H]`` vs ``[n_items, H]``; item 0 (padding) excluded."""
    logits = F.normalize(predictions, dim=-1) @ F.normalize(item_table, dim=-1).T * scale
    logits[:, 0] = float("-inf")
    return LossSum(F.cross_entropy(logits, target_ids, reduction="sum"), len(target_ids))


def matching_loss(positive_logits: torch.Tensor, negative_logits: torch.Tensor) -> LossSum:
    """BCE: ``[B]`` clicked-ad logits against ``[B, K]`` sampled-ad logits (over every logit)."""
    logits = torch.cat([positive_logits[:, None], negative_logits], dim=1)
    labels = torch.zeros_like(logits)
    labels[:, 0] = 1
    return LossSum(F.binary_cross_entropy_with_logits(logits, labels, reduction="sum"), logits.numel())


def symmetric_infonce(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, all_a: torch.Tensor | None = None,
                      all_b: torch.Tensor | None = None, offset: int = 0) -> LossSum:
    """CLIP-style loss: row i of ``a`` [B, H] matches row i of ``b`` [B, H], in-batch negatives.

    In a multi-process run the batch is every process's rows, ``all_a`` / ``all_b``
    ``[B_all, H]`` (gathered with gradients; this process's rows start at ``offset``):
    each process scores its own rows against all of them. One process: ``a`` and ``b``
    are the whole batch. With fewer than two rows in all there are no negatives: 0.
    """
    all_a = a if all_a is None else all_a
    all_b = b if all_b is None else all_b
    if len(all_a) < 2:
        return LossSum((a.sum() + b.sum()) * 0, 0)
    a_n, b_n = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    labels = torch.arange(offset, offset + len(a), device=a.device)
    a_to_b = a_n @ F.normalize(all_b, dim=-1).T * scale  # [B, B_all]
    b_to_a = b_n @ F.normalize(all_a, dim=-1).T * scale
    loss_sum = (F.cross_entropy(a_to_b, labels, reduction="sum") + F.cross_entropy(b_to_a, labels, reduction="sum")) / 2
    return LossSum(loss_sum, len(a))
