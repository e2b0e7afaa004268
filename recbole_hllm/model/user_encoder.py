"""User LLM: a causal LLM that reads a user's item embeddings as ``inputs_embeds``.

Its hidden state at history position i is the prediction of item i+1's embedding
(HLLM). Item embeddings enter through ``item_to_user`` (a linear map when the item
and user LLMs differ in width, identity otherwise), and predictions are compared
with items in that same space.
"""
from __future__ import annotations

import torch
from torch import nn

from recbole_hllm.backbones.backbone import (
    BackboneSpec,
    base_model,
    compute_precision,
    hidden_size,
    load_backbone,
    resolve_dtype,
)


class UserEncoder(nn.Module):
    def __init__(self, config, item_hidden_size: int, device: torch.device, keep_token_embeddings: bool = False):
        super().__init__()
        self.spec = BackboneSpec.from_config(config, "user")
        self.dtype = resolve_dtype(self.spec.dtype, device)
        self.llm, self.tokenizer = load_backbone(self.spec, device)
        if not keep_token_embeddings:
            _drop_token_embeddings(self.llm)
        self.hidden_size = hidden_size(self.llm)
        if item_hidden_size == self.hidden_size:
            self.item_to_user = nn.Identity()
        else:
            self.item_to_user = nn.Linear(item_hidden_size, self.hidden_size, bias=False)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[B, L, H_user]`` embeddings -> ``[B, L, H_user]`` last hidden states (float32)."""
        with compute_precision(inputs_embeds.device, self.dtype):
            out = self.llm(inputs_embeds=inputs_embeds.to(self.dtype), attention_mask=attention_mask)
        return out.last_hidden_state.float()


def _drop_token_embeddings(model: nn.Module) -> None:
    """HLLM feeds only ``inputs_embeds``: the vocabulary table (28 M params for SmolLM2)
    would only cost memory and checkpoint size, so it is replaced by an empty one."""
    base = base_model(model)
    old = base.get_input_embeddings()
    if old is not None:
        base.set_input_embeddings(nn.Embedding(1, old.embedding_dim).to(old.weight.device, old.weight.dtype))
        base.get_input_embeddings().requires_grad_(False)
