"""Small heads on top of the user embedding U."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SoftTokenProjector(nn.Module):
    """Maps U ``[..., H_user]`` to one soft token ``[..., H_creative]`` of the creative LLM.

    The paper's projector is one linear map without bias; so is this one, applied to U
    scaled to unit RMS. Why the scaling and the init: U is a final-norm hidden state
    whose scale has nothing to do with the creative LLM's token embeddings, and a soft
    token far larger or smaller than a word embedding is either ignored or swamps the
    prompt. With unit-RMS input and weights drawn at ``token_norm / sqrt(H_user * H_creative)``
    the soft token starts at the typical norm of the creative LLM's word embeddings.
    """

    def __init__(self, user_size: int, creative_size: int, token_norm: float):
        super().__init__()
        self.linear = nn.Linear(user_size, creative_size, bias=False)
        nn.init.normal_(self.linear.weight, std=token_norm / (user_size * creative_size) ** 0.5)

    def forward(self, user_vecs: torch.Tensor) -> torch.Tensor:
        return self.linear(F.rms_norm(user_vecs, user_vecs.shape[-1:]))


class MatchingHead(nn.Module):
    """User-ad matching ("Item-User Predictor"): scores (U, ad embedding) pairs.

    An MLP over [u, a, u*a] after projecting both to a common width; trained with
    binary cross-entropy (clicked ad vs sampled ads) and later used to prune which
    (user cluster, ad) pairs are worth a generation.
    """

    def __init__(self, user_size: int, item_size: int, width: int):
        super().__init__()
        self.user_proj = nn.Linear(user_size, width)
        self.item_proj = nn.Linear(item_size, width)
        self.mlp = nn.Sequential(nn.Linear(3 * width, width), nn.GELU(), nn.Linear(width, 1))

    def forward(self, user_vecs: torch.Tensor, item_vecs: torch.Tensor) -> torch.Tensor:
        """``[..., Hu]`` and ``[..., Hi]`` (broadcastable) -> ``[...]`` logits."""
        u, a = self.user_proj(user_vecs), self.item_proj(item_vecs)
        u, a = torch.broadcast_tensors(u, a)
        return self.mlp(torch.cat([u, a, u * a], dim=-1)).squeeze(-1)
