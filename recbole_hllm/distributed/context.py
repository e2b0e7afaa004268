"""The process group as the models see it: rank, world size and the few collectives they need.

Every helper is a no-op (or the identity) in a single process, so model code calls
them unconditionally and one code path serves a laptop and a multi-GPU run.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def global_means(parts: list) -> list[torch.Tensor]:
    """This rank's share of each loss's mean over every rank's items (one collective for all).

    ``parts``: :class:`~recbole_hllm.model.losses.LossSum` values (a sum and its count).
    DDP averages gradients over ranks, so each rank returns ``sum * world / global_count``:
    the average over ranks is then ``sum over all items / global_count``, the loss one
    process would compute on the whole global batch, however unevenly the items fell.
    Every rank must call this once per step with the same losses, even with no items.
    """
    if not is_distributed():
        return [part.mean() for part in parts]
    device = parts[0].total.device
    counts = torch.stack([torch.as_tensor(p.count, dtype=torch.float32, device=device).detach() for p in parts])
    dist.all_reduce(counts)
    return [part.total * world_size() / count.clamp(min=1) for part, count in zip(parts, counts)]


def gather_with_grad(rows: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate every rank's ``rows`` [N_r, ...] in rank order, gradients flowing back.

    Returns (``[sum N_r, ...]``, offset of this rank's rows). Ranks may hold different
    numbers of rows: they are padded to the largest for the collective and cut after.
    """
    if not is_distributed():
        return rows, 0
    sizes = _all_sizes(len(rows), rows.device)
    from torch.distributed.nn.functional import all_gather

    parts = all_gather(_pad_rows(rows, max(sizes)))
    gathered = torch.cat([part[:n] for part, n in zip(parts, sizes)])
    return gathered, sum(sizes[: rank()])


def gather_no_grad(rows: torch.Tensor) -> torch.Tensor:
    """Like :func:`gather_with_grad` for tensors that need no gradient (ids, masks)."""
    if not is_distributed():
        return rows
    sizes = _all_sizes(len(rows), rows.device)
    padded = _pad_rows(rows, max(sizes))
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


def gather_objects(value) -> list:
    """Every rank's picklable ``value``, in rank order (a one-item list in one process)."""
    if not is_distributed():
        return [value]
    out = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def broadcast_object(value, src: int = 0):
    """Rank ``src``'s ``value`` on every rank."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def sum_across_ranks(table: torch.Tensor) -> torch.Tensor:
    """In-place sum of ``table`` over ranks (disjoint shards filled with zeros elsewhere -> the whole table)."""
    if is_distributed():
        dist.all_reduce(table)
    return table


def _pad_rows(rows: torch.Tensor, n: int) -> torch.Tensor:
    """``rows`` [N, ...] with zero rows appended up to ``n`` (collectives need equal shapes)."""
    if len(rows) < n:
        rows = torch.cat([rows, rows.new_zeros(n - len(rows), *rows.shape[1:])])
    return rows.contiguous()


def _all_sizes(n: int, device) -> list[int]:
    size = torch.tensor([n], device=device)
    sizes = [torch.zeros_like(size) for _ in range(world_size())]
    dist.all_gather(sizes, size)
    return [int(s) for s in sizes]
