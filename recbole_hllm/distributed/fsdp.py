"""Optional FSDP sharding of the creative LLM (``creative_llm_fsdp: True``).

Why: a paper-size creative LLM (Qwen3-8B: 16 GB of bf16 weights, plus gradients and
Adam state under full fine-tuning) does not fit on one GPU beside the item and user
LLMs. With this option each decoder layer of the creative LLM (the classes its
``_no_split_modules`` names) becomes an FSDP2 unit sharded over all ranks; the
embedding table, final norm and LM head stay whole (they are called outside the
decoder, and in 7-8B models they are a small share). RecBole's DDP wrapper is told to
ignore the sharded parameters: FSDP all-gathers them for each forward and
reduce-scatters their gradients itself.

What this asks of the rest of the code, and where it is done:

* every rank runs the creative LLM the same number of times per step, even on a batch
  without creative rows (``CreativeLLM.loss`` runs a one-token forward then);
* generation runs every batch on every rank with ``synced_gpus`` (ranks finish
  decoding at different steps), so titles are not shared out by rank;
* checkpoints gather the full state dict on all ranks and rank 0 writes it; the best
  model is loaded back the same way. Resuming a run (``resume_checkpoint``) is not
  supported with this option.

FSDP2 runs over NCCL on GPUs and over gloo on CPUs (the tests use the latter); it needs
a multi-process run.
"""
from __future__ import annotations

import torch
from torch import nn

from recbole_hllm.backbones.backbone import base_model
from recbole_hllm.distributed.context import is_distributed, world_size


def shard_decoder_layers(llm: nn.Module, device: torch.device, compute_dtype: torch.dtype = torch.float32) -> int:
    """Make each decoder layer of ``llm`` (a HF causal LM, possibly peft-wrapped) an FSDP2 unit.

    With a compute dtype below float32, FSDP's ``MixedPrecisionPolicy`` gathers the layers'
    weights in that dtype (half the traffic) while the shards, the optimizer's copy,
    stay float32 and gradients are reduced in float32: bf16-mixed training."""
    if not is_distributed():
        raise ValueError("creative_llm_fsdp: True shards the creative LLM over several processes: start a "
                         "multi-process run (run_recbole --nproc N, N >= 2) or set creative_llm_fsdp: False")
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    base = base_model(llm)
    layer_classes = set(getattr(base, "_no_split_modules", None) or [])
    layers = [m for m in llm.modules() if type(m).__name__ in layer_classes]
    if not layers:
        raise ValueError(f"creative_llm_fsdp: {type(base).__name__} names no decoder-layer classes "
                         "(_no_split_modules), so there is nothing to shard by layer")
    mesh = init_device_mesh(device.type, (world_size(),))
    policy = {}
    if compute_dtype != torch.float32:
        from torch.distributed.fsdp import MixedPrecisionPolicy

        policy["mp_policy"] = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
    for layer in layers:
        fully_shard(layer, mesh=mesh, **policy)
    return len(layers)


def is_sharded(param: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(param, DTensor)


def has_sharded_params(model: nn.Module) -> bool:
    return any(is_sharded(p) for p in model.parameters())


def reshard(model: nn.Module) -> None:
    """Put every FSDP module's parameters back in their sharded form. After a forward
    outside training (e.g. the prefix anchor's), FSDP keeps the root's gathered, whole
    tensors, which a check for sharded parameters would miss."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


@torch.no_grad()
def clip_mixed_grad_norm(parameters, max_norm: float, norm_type: float = 2.0) -> torch.Tensor:
    """``clip_grad_norm_`` over FSDP-sharded and whole (DDP, already all-reduced)
    gradients together: the sharded ones add their squared norms over the ranks."""
    import torch.distributed as dist

    if float(norm_type) != 2.0:
        raise ValueError(f"clip_grad_norm: norm_type {norm_type} with creative_llm_fsdp: only the 2-norm is supported")
    grads = [p.grad for p in parameters if p.grad is not None]
    sharded = [g.to_local() for g in grads if is_sharded(g)]
    whole = [g for g in grads if not is_sharded(g)]
    device = (sharded or whole)[0].device
    sharded_sq = sum((s.float().pow(2).sum() for s in sharded), torch.zeros((), device=device))
    dist.all_reduce(sharded_sq)
    whole_sq = sum((w.float().pow(2).sum() for w in whole), torch.zeros((), device=device))
    total = (sharded_sq + whole_sq).sqrt()
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in sharded:
        g.mul_(coef.to(g.dtype))
    for g in whole:
        g.mul_(coef.to(g.dtype))
    return total


def ignore_sharded_in_ddp(model: nn.Module) -> list[str]:
    """Tell the DDP wrapper RecBole builds later to leave FSDP's parameters alone."""
    reshard(model)
    names = [name for name, p in model.named_parameters() if is_sharded(p)]
    if names:
        from torch.nn.parallel import DistributedDataParallel

        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)
    return names


def full_state_dict(model: nn.Module, optimizer=None) -> tuple[dict, dict | None]:
    """(model, optimizer) state dicts with whole tensors on the CPU; a collective when sharded."""
    if not has_sharded_params(model):
        return model.state_dict(), optimizer.state_dict() if optimizer is not None else None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state, optim_state = get_state_dict(model, optimizer or [], options=options)
    return model_state, optim_state if optimizer is not None else None


def load_full_state_dict(model: nn.Module, state: dict) -> None:
    """Load whole tensors into ``model``, into the shards where it is sharded (a collective then)."""
    if not has_sharded_params(model):
        model.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
