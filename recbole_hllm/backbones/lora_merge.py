"""Decode with the LoRA deltas folded into the base weights, and give the weights back bit for bit.

Why: an unmerged LoRA layer runs its base product plus two thin ones (``x A^T B^T``) and
their Python dispatch on every token; merged (``W + scale * B A``), each layer is one
product again (``benchmarks.lora_merge``: 1.06x-1.18x on 2 CPU cores, two runs). peft's
own ``unmerge`` subtracts the delta back, which leaves float rounding in ``W`` (the next
training step or generation would start from slightly different weights), so
:func:`merged_lora` keeps a copy of each base weight it merges and restores it exactly.
Only layers with a non-zero delta are merged and copied (about 280 MB for the default
SmolLM2's 20 tuned layers in float32; the 10 frozen layers below keep B = 0). A merge
costs seconds, so callers merge once around a whole pass of batches; a nested
:func:`merged_lora` finds the layers merged already and does nothing.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


def lora_layers(model: nn.Module) -> list[nn.Module]:
    """peft tuner layers of ``model`` that hold at least one active LoRA adapter, not yet merged."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # peft not installed: nothing can be a LoRA layer
        return []
    return [m for m in model.modules()
            if isinstance(m, LoraLayer) and not m.merged and any(a in m.lora_A for a in m.active_adapters)]


@contextmanager
def merged_lora(model: nn.Module, enabled: bool = True):
    """Within the block, ``model``'s LoRA layers compute with merged weights; on exit each
    base weight is exactly what it was before (a kept copy, not a subtraction)."""
    # a layer whose B matrices are all zero (untrained, e.g. below creative_tuned_layers) has no delta to merge
    layers = [layer for layer in lora_layers(model) if _has_delta(layer)] if enabled else []
    saved: list[tuple[nn.Module, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for layer in layers:
                weight = layer.get_base_layer().weight
                saved.append((layer, weight.detach().clone()))
                layer.merge()
        yield len(layers)
    finally:
        with torch.no_grad():
            for layer, weight in saved:
                if layer.merged and any(layer.use_dora.values()):
                    layer.unmerge()  # DoRA keeps more state than the weight: let peft undo it first
                layer.get_base_layer().weight.copy_(weight)
                # plain LoRA: the kept weight is the whole state, so only peft's record of the merge is
                # cleared (its unmerge would recompute every delta only to have it overwritten)
                layer.merged_adapters.clear()


def _has_delta(layer: nn.Module) -> bool:
    """Whether any active adapter of ``layer`` has a non-zero B (its delta B A is then non-zero)."""
    return any(bool(layer.lora_B[a].weight.any()) for a in layer.active_adapters if a in layer.lora_B)
