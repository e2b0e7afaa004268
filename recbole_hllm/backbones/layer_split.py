"""Run a Hugging Face backbone in two parts: frozen lower layers, trained upper layers.

Why: training only the top N layers of an item LLM needs the hidden states that enter
layer ``L - N``; those never change while the lower layers are frozen, so they can be
computed once per run and every training step runs the top N layers alone. On a
6-layer MiniLM that makes a step several times cheaper than full or LoRA tuning.

Both parts work on any model whose decoder/encoder layers sit in one ``nn.ModuleList``
(Llama, Qwen, BERT, ...), without touching the model's code:

* :func:`layer_inputs` runs a model only as far as one layer and returns what enters
  it (a forward pre-hook captures the hidden states and stops the forward);
* :func:`keep_top_layers` turns a model into its top N layers, fed ``inputs_embeds``
  that are already hidden states (the model's own input-embedding step is bypassed).
"""
from __future__ import annotations

import torch
from torch import nn

from recbole_hllm.backbones.backbone import base_model


def layer_stack(model: nn.Module) -> nn.ModuleList:
    """The ``nn.ModuleList`` of the model's ``num_hidden_layers`` transformer layers."""
    base = base_model(model)
    count = base.config.num_hidden_layers
    stacks = [m for m in base.modules() if isinstance(m, nn.ModuleList) and len(m) == count and count > 0]
    if not stacks:
        raise ValueError(f"{type(base).__name__}: no list of its {count} layers found")
    return stacks[0]


class _StopForward(Exception):
    pass


@torch.no_grad()
def layer_inputs(model: nn.Module, layer_index: int, **forward_kwargs) -> torch.Tensor:
    """The hidden states ``[B, T, H]`` that enter layer ``layer_index`` (0: the input
    embeddings' output) when ``model(**forward_kwargs)`` runs; the layers from
    ``layer_index`` on are not run."""
    captured = {}

    def capture(module, args, kwargs):
        captured["hidden"] = args[0] if args else kwargs["hidden_states"]
        raise _StopForward

    handle = layer_stack(model)[layer_index].register_forward_pre_hook(capture, with_kwargs=True)
    try:
        model(**forward_kwargs)
    except _StopForward:
        pass
    finally:
        handle.remove()
    return captured["hidden"]


class _HiddenStatesIn(nn.Module):
    """Stands in for an encoder's embedding block (word + position + type embeddings and
    a norm, BERT-style): the inputs are hidden states already, passed on unchanged. Its
    empty ``word_embeddings`` keeps ``get_input_embeddings()`` working."""

    def __init__(self, old: nn.Module):
        super().__init__()
        width = old.word_embeddings.embedding_dim
        self.word_embeddings = nn.Embedding(1, width).to(old.word_embeddings.weight.device).requires_grad_(False)

    def forward(self, *args, inputs_embeds=None, **kwargs):
        return inputs_embeds if inputs_embeds is not None else args[1]


def keep_bottom_layers(model: nn.Module, n_bottom: int) -> nn.Module:
    """Cut ``model`` (in place) to its first ``n_bottom`` layers (enough for
    :func:`layer_inputs` up to layer ``n_bottom - 1``)."""
    stack = layer_stack(model)
    del stack[n_bottom:]
    model.config.num_hidden_layers = n_bottom
    if isinstance(getattr(model.config, "layer_types", None), list):
        model.config.layer_types = model.config.layer_types[:n_bottom]
    return model


def keep_top_layers(model: nn.Module, n_top: int) -> nn.Module:
    """Cut ``model`` (in place) to its top ``n_top`` layers; it then reads
    ``inputs_embeds`` as the hidden states entering its first kept layer, with the same
    attention mask and positions as the whole model."""
    stack = layer_stack(model)
    first = len(stack) - n_top
    if not 0 <= first < len(stack):
        raise ValueError(f"cannot keep the top {n_top} of {len(stack)} layers")
    del stack[:first]
    for module in stack.modules():  # attention layers index a KV cache by their layer number
        if isinstance(getattr(module, "layer_idx", None), int):
            module.layer_idx -= first
    config = model.config
    config.num_hidden_layers = n_top
    config.use_cache = False  # a training encoder: no KV cache
    if getattr(model, "pooler", None) is not None:  # BERT's [CLS] pooler: item embeddings never read it
        model.pooler = None
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = config.layer_types[first:]
    if isinstance(getattr(model, "embeddings", None), nn.Module):  # encoder style: embeddings add positions, norm
        model.embeddings = _HiddenStatesIn(model.embeddings)
    else:  # decoder style: inputs_embeds go straight to the layers; the vocabulary table is never used
        old = model.get_input_embeddings()
        model.set_input_embeddings(nn.Embedding(1, old.embedding_dim).to(old.weight.device, old.weight.dtype))
    return model
