"""Next-item losses on cosine similarities (HLLM's recipe).

Means are taken over every rank's positions (:func:`~recbole_hllm.distributed.context.global_mean`),
so a multi-process run optimises the loss of its global batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from recbole_hllm.distributed.context import global_mean


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
    return global_mean(F.cross_entropy(logits, labels, reduction="sum"), len(logits))


def full_softmax(predictions, item_table, target_ids, scale):
    """Cross-entropy over every item: ``[P, H]`` vs ``[n_items, H]``; item 0 (padding) excluded."""
    logits = F.normalize(predictions, dim=-1) @ F.normalize(item_table, dim=-1).T * scale
    logits[:, 0] = float("-inf")
    return global_mean(F.cross_entropy(logits, target_ids, reduction="sum"), len(target_ids))
