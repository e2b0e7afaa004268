"""Guidance on the user condition at decoding time (classifier-free guidance, paired rows).

Why: a small creative LLM reads U only weakly; at each step its next-token
distribution given the user's own condition differs a little from the one given a
condition that carries no user (the contrast). Classifier-free guidance (Ho & Salimans
2022; for language models, Sanchez et al. 2023, "Stay on topic with classifier-free
guidance") decodes from

    log p_own + gamma * (log p_own - log p_contrast)

which amplifies exactly what the user's condition changes. gamma = 0 is plain
decoding.

How: the batch is doubled, rows ``[own (B) | contrast (B)]``. :func:`guided_scores` turns
their scores into the B guided rows, which greedy decoding
(:func:`~recbole_hllm.backbones.greedy.greedy_decode`) feeds back to both halves, so a
row and its contrast row stay in step (same length, same EOS). :class:`PairedGuidance`
does the same as a logits processor for ``generate`` (used where the ranks of a sharded
model must decode in step). Either needs greedy decoding: sampled halves would drift apart.
"""
from __future__ import annotations

import torch
from transformers import LogitsProcessor


def guided_scores(scores: torch.Tensor, scale: float) -> torch.Tensor:
    """Scores ``[2B, V]`` of rows ``[own | contrast]`` -> guided log-probabilities ``[B, V]``
    (float32). A token masked (-inf) in the own row stays masked."""
    rows = scores.shape[0] // 2
    log_probs = torch.log_softmax(scores.float(), dim=-1)
    own, contrast = log_probs[:rows], log_probs[rows:]
    return torch.where(torch.isinf(own), own, own + scale * (own - contrast))


class PairedGuidance(LogitsProcessor):
    """Scores ``[2B, V]`` of rows ``[own | contrast]`` -> the guided scores, the same for a
    row and its contrast row."""

    def __init__(self, scale: float, rows: int):
        if scale < 0:
            raise ValueError(f"guidance scale must be >= 0, got {scale}")
        self.scale, self.rows = float(scale), rows

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != 2 * self.rows:
            raise ValueError(f"paired guidance expects {2 * self.rows} rows (own and contrast), got {scores.shape[0]}")
        # a token masked (-inf) by another processor is masked in both halves (same input ids): kept masked
        guided = guided_scores(scores, self.scale)
        return torch.cat([guided, guided]).to(scores.dtype)
