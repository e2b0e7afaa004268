"""How the user embedding U enters the creative LLM (``user_injection`` in yaml).

* ``soft_token``: the paper's way. U is mapped by a bias-free linear projector to ONE
  input embedding at the prompt's ``{user}`` slot. Made for an 8B creative LLM; a
  135M one learns to ignore it within a CPU budget of steps (input-only soft prompts
  need billion-scale models: Lester et al. 2021).
* ``prefix``: U is mapped by a small MLP to a key/value pair at EVERY layer for P
  virtual tokens (prefix tuning, Li & Liang 2021; deep prompts, P-Tuning v2), handed to
  the model as a pre-filled KV cache (:mod:`recbole_hllm.backbones.prefix_cache`). Depth is
  what small models need: every layer reads U directly.
* ``both``: the prefix and the soft token.

:class:`UserConditioner` maps U ``[B, H_user]`` to a :class:`UserCondition`, which the
creative LLM consumes; centroids in U space (clustered inference) go through the same
module, so every path that feeds U uses the configured mode.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recbole_hllm.backbones.prefix_cache import KVGeometry
from recbole_hllm.config import INJECTION_MODES  # one list of user_injection's values
from recbole_hllm.model.heads import SoftTokenProjector


@dataclass
class UserCondition:
    """What the creative LLM receives for a batch of B users."""

    soft_tokens: torch.Tensor | None = None  # [B, H_creative]: one input embedding per row
    prefix: torch.Tensor | None = None  # [layers, 2, B, kv_heads, P, head_dim]: keys and values per layer

    @property
    def prefix_len(self) -> int:
        return 0 if self.prefix is None else self.prefix.shape[-2]

    @staticmethod
    def cat(first: "UserCondition", second: "UserCondition") -> "UserCondition":
        """The rows of ``first`` then those of ``second`` (both of one mode)."""
        join = lambda a, b, dim: None if a is None else torch.cat([a, b.to(a.dtype)], dim=dim)  # noqa: E731
        return UserCondition(join(first.soft_tokens, second.soft_tokens, 0), join(first.prefix, second.prefix, 2))

    def rows(self, index) -> "UserCondition":
        """The condition of rows ``index`` (a slice, list or tensor of row numbers)."""
        return UserCondition(None if self.soft_tokens is None else self.soft_tokens[index],
                             None if self.prefix is None else self.prefix[:, :, index])


class UserPrefixEncoder(nn.Module):
    """U ``[B, H_user]`` -> per-layer keys and values ``[layers, 2, B, kv_heads, P, head_dim]``.

    prefix = anchor + scale * MLP(RMS-norm(U)). RMS-norm: U's scale is a final-norm
    hidden state's, unrelated to the creative LLM. The MLP (Linear -> tanh -> Linear) is
    the reparameterisation prefix tuning uses because optimising a prefix directly is
    unstable. ``anchor`` is the creative LLM's own keys and values of a short real text
    (prefix tuning's finding: real-word activations are a far better start than random
    ones), so the untrained prefix reads to the model like P ordinary tokens; ``scale``
    is that text's standard deviation per layer, for keys and values apart, so U's
    deviation from the anchor starts at the same small fraction of every layer's own
    scale (SmolLM2's values are ~0.04 in layer 0 and ~1 in layer 29; a random prefix of
    one scale for all disrupted the first layers and made training diverge)."""

    def __init__(self, user_size: int, geometry: KVGeometry, tokens: int, width: int, init_std: float,
                 anchor: torch.Tensor, tuned_layers: int | None = None):
        """``tuned_layers``: only the top N layers read U; the ones below keep the anchor
        (see ``creative_tuned_layers``). None: every layer."""
        super().__init__()
        self.geometry, self.tokens = geometry, tokens
        expected = (geometry.layers, 2, geometry.kv_heads, tokens, geometry.head_dim)
        if tuple(anchor.shape) != expected:
            raise ValueError(f"prefix anchor has shape {tuple(anchor.shape)}, expected {expected}")
        self.first_tuned = geometry.layers - min(tuned_layers or geometry.layers, geometry.layers)
        tuned = geometry.layers - self.first_tuned
        self.mlp = nn.Sequential(nn.Linear(user_size, width), nn.Tanh(),
                                 nn.Linear(width, geometry.numbers_per_token // geometry.layers * tuned * tokens))
        nn.init.normal_(self.mlp[2].weight, std=init_std)
        nn.init.zeros_(self.mlp[2].bias)
        anchor = anchor.detach().float()
        std = anchor.flatten(2).std(dim=-1)  # [layers, 2]: per layer, keys and values apart
        std = torch.where(std > 0, std, torch.ones_like(std))
        scale = std[:, :, None, None, None].expand_as(anchor)
        self.register_buffer("anchor", anchor.clone())  # [layers, 2, kv_heads, P, head_dim]
        self.register_buffer("scale", scale[self.first_tuned:].flatten().clone())

    def forward(self, user_vecs: torch.Tensor) -> torch.Tensor:
        g, batch = self.geometry, len(user_vecs)
        deviation = self.mlp(F.rms_norm(user_vecs, user_vecs.shape[-1:]))  # [B, tuned layers * 2 * kv_heads * P * hd]
        tuned = (self.anchor[self.first_tuned:].flatten() + self.scale * deviation).view(
            batch, g.layers - self.first_tuned, 2, g.kv_heads, self.tokens, g.head_dim).permute(1, 2, 0, 3, 4, 5)
        if not self.first_tuned:
            return tuned  # [layers, 2, B, kv_heads, P, head_dim]
        fixed = self.anchor[: self.first_tuned, :, None].expand(-1, -1, batch, -1, -1, -1)
        return torch.cat([fixed.to(tuned.dtype), tuned])


class UserConditioner(nn.Module):
    """U -> :class:`UserCondition` in the configured ``mode``."""

    def __init__(self, mode: str, user_size: int, creative_size: int, token_norm: float, geometry: KVGeometry,
                 prefix_tokens: int, prefix_width: int, prefix_init_std: float,
                 prefix_anchor: torch.Tensor | None = None, tuned_layers: int | None = None):
        """``prefix_anchor``: ``[layers, 2, kv_heads, P, head_dim]``, the creative LLM's keys
        and values of P real tokens (see :class:`UserPrefixEncoder`); needed unless ``soft_token``."""
        super().__init__()
        if mode not in INJECTION_MODES:
            raise ValueError(f"user_injection = {mode!r}: expected one of {', '.join(INJECTION_MODES)}")
        self.mode = mode
        self.soft_token = SoftTokenProjector(user_size, creative_size, token_norm) if mode != "prefix" else None
        self.prefix = None
        if mode != "soft_token":
            if prefix_anchor is None:
                raise ValueError(f"user_injection = {mode!r} needs the creative LLM's prefix anchor")
            self.prefix = UserPrefixEncoder(user_size, geometry, prefix_tokens, prefix_width, prefix_init_std,
                                            prefix_anchor, tuned_layers)

    def anchor_condition(self, batch: int) -> UserCondition:
        """The condition of no user: the prefix anchor alone (what the prefix is before U
        moves it), for ``batch`` rows; ``prefix`` mode only (a soft token has no such point)."""
        if self.mode != "prefix":
            raise ValueError(f"the anchor contrast needs user_injection = 'prefix', not {self.mode!r}; "
                             "use generation_guidance_contrast: batch_mean")
        anchor = self.prefix.anchor  # [layers, 2, kv_heads, P, head_dim]
        return UserCondition(prefix=anchor[:, :, None].expand(-1, -1, batch, -1, -1, -1))

    def forward(self, user_vecs: torch.Tensor) -> UserCondition:
        return UserCondition(soft_tokens=self.soft_token(user_vecs) if self.soft_token is not None else None,
                             prefix=self.prefix(user_vecs) if self.prefix is not None else None)
