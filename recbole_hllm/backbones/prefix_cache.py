"""A per-row key/value prefix for a Hugging Face causal LM, handed in as a pre-filled KV cache.

Why a cache: every decoder layer of a HF model already accepts past keys and values and
attends to them before the current tokens, so a prefix of P "virtual tokens" at every
layer (prefix tuning, Li & Liang 2021) needs no change to the model's code. The prefix
is given as one tensor ``[layers, 2, B, kv_heads, P, head_dim]`` (2 = key, value).

Two caches, for the two ways the model is run:

* training (:func:`training_cache`): layers whose ``update`` returns prefix + new states
  and stores nothing. A plain ``DynamicCache`` would grow on every forward, and
  activation checkpointing replays each layer's forward in the backward pass, which
  would append the states a second time; a cache that only reads is safe to replay, so
  :func:`allow_checkpointing_with_read_only_cache` lets the decoder layers keep it then.
* generation (:func:`generation_cache`): a ``DynamicCache`` pre-filled with the prefix,
  which then grows with the generated tokens as usual (built fresh for every call).

Prefix keys carry no rotary position: the model rotates only the new keys, and with a
cache of length P the real tokens start at position P (the model derives that from
the cache, or from the attention mask, which gets P leading ones).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class KVGeometry:
    """Shape of one token's keys (or values) in every layer of a decoder."""

    layers: int
    kv_heads: int
    head_dim: int

    @classmethod
    def of(cls, config) -> "KVGeometry":
        """Read from a HF config: GQA models (SmolLM2, Qwen, Llama 3) have fewer key/value
        heads than query heads, and some set ``head_dim`` apart from hidden / heads."""
        config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(layers=config.num_hidden_layers, kv_heads=kv_heads, head_dim=head_dim)

    @property
    def numbers_per_token(self) -> int:
        """Keys and values of all layers for one virtual token."""
        return self.layers * 2 * self.kv_heads * self.head_dim


@functools.cache
def _read_only_layer_class():
    """Defined on first use: importing transformers costs a third of a second, and
    ``import recbole_hllm`` should not pay it."""
    from transformers.cache_utils import DynamicLayer

    class ReadOnlyPrefixLayer(DynamicLayer):
        """One layer's prefix: ``update`` returns prefix + new states and stores nothing."""

        def __init__(self, keys: torch.Tensor, values: torch.Tensor):
            super().__init__()
            self.keys, self.values = keys, values
            self.device, self.is_initialized = keys.device, True

        def update(self, key_states, value_states, *args, **kwargs):
            return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)

    return ReadOnlyPrefixLayer


def training_cache(prefix: torch.Tensor):
    """A cache that feeds ``prefix`` ``[layers, 2, B, kv_heads, P, head_dim]`` to every
    forward (with gradients) and never changes: safe under activation checkpointing."""
    from transformers.cache_utils import Cache

    layer_class = _read_only_layer_class()
    return Cache(layers=[layer_class(layer[0], layer[1]) for layer in prefix])


def generation_cache(prefix: torch.Tensor):
    """A ``DynamicCache`` holding ``prefix``, to be extended by ``generate``."""
    from transformers.cache_utils import DynamicCache

    return DynamicCache(ddp_cache_data=[(layer[0], layer[1]) for layer in prefix])


def allow_checkpointing_with_read_only_cache(model) -> None:
    """Let activation-checkpointed decoder layers keep the cache they are given.

    transformers drops the cache in checkpointed layers (a growing cache would be
    updated twice when the backward pass replays the layer) unless the layer declares
    ``_can_checkpoint_with_cache``; :func:`training_cache` never grows, so this is set
    on the model's layer instances. Older transformers lack that switch: then the
    combination is refused rather than silently training without the prefix."""
    from transformers import modeling_layers

    layer_class = getattr(modeling_layers, "GradientCheckpointingLayer", None)
    if layer_class is None or not hasattr(layer_class, "_can_checkpoint_with_cache"):
        raise ValueError("this transformers version drops a KV cache under activation checkpointing, so the "
                         "user prefix would be lost in training: set creative_llm_activation_checkpointing: 0 "
                         "or user_injection: soft_token")
    for module in model.modules():
        if isinstance(module, layer_class):
            module._can_checkpoint_with_cache = True
