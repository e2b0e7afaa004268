"""Start RecBole's multi-process run with this plugin loaded in every worker.

RecBole's ``quick_start.run`` spawns ``run_recboles`` in fresh interpreters, which
import RecBole but not this plugin, so ``HLLM`` would be unknown there and the
compatibility fixes missing. :func:`run` is RecBole's ``run`` with one change: the
spawned function imports ``recbole_hllm`` first (and, on the CPU, gives each worker its
share of the cores). A worker that raises ends the whole run: torch's ``spawn``
terminates the other workers, and :class:`DistributedRunError` carries the failing
rank and its traceback; a known user error (a bad config value, a missing file) in a
worker is raised again in the parent as itself, so it prints as one line.
"""
from __future__ import annotations

import os

from recbole_hllm.errors import UserError


class DistributedRunError(RuntimeError):
    """A worker process failed; the message names its rank and holds its traceback."""


def run(model, dataset, config_file_list=None, config_dict=None, saved=True, nproc=1, world_size=-1,
        ip="localhost", port="5678", group_offset=0):
    """RecBole's ``quick_start.run`` (same arguments, same result dict from rank 0)."""
    from recbole.quick_start import run_recbole

    if nproc == 1 and world_size <= 0:
        return run_recbole(model=model, dataset=dataset, config_file_list=config_file_list,
                           config_dict=config_dict, saved=saved)
    import torch.multiprocessing as mp

    world_size = nproc if world_size == -1 else world_size
    queue = mp.get_context("spawn").SimpleQueue()
    config_dict = {**(config_dict or {}), "world_size": world_size, "ip": ip, "port": port, "nproc": nproc,
                   "offset": group_offset}
    spawn(_recbole_worker, nproc, (model, dataset, config_file_list, {"config_dict": config_dict, "queue": queue,
                                                                      "saved": saved}))
    return None if queue.empty() else queue.get()


def spawn(worker, nproc: int, args: tuple) -> None:
    """``torch.multiprocessing.spawn(worker, args, nproc)``; a failed worker -> :class:`DistributedRunError`,
    or the worker's :class:`~recbole_hllm.errors.UserError` itself (its message, raised here)."""
    import torch.multiprocessing as mp

    user_errors = mp.get_context("spawn").SimpleQueue()
    try:
        mp.spawn(_relaying_user_errors, args=(worker, user_errors, nproc, *args), nprocs=nproc, join=True)
    except mp.ProcessRaisedException as exc:
        if not user_errors.empty():
            raise UserError(user_errors.get()) from None
        raise DistributedRunError(f"worker rank {exc.error_index} failed:\n{exc}") from None
    except mp.ProcessExitedException as exc:
        raise DistributedRunError(f"worker rank {exc.error_index} exited with code {exc.exit_code}"
                                  + (f" (signal {exc.signal_name})" if exc.signal_name else "")) from None


def _relaying_user_errors(local_rank: int, worker, user_errors, *args) -> None:
    try:
        worker(local_rank, *args)
    except UserError as exc:
        user_errors.put(str(exc))
        raise


def share_cpu_threads(nproc: int) -> None:
    """Give each of ``nproc`` CPU workers an equal share of the cores (they would oversubscribe)."""
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))


def _recbole_worker(local_rank: int, nproc: int, model, dataset, config_file_list, kwargs):
    from recbole.quick_start.quick_start import run_recbole

    import recbole_hllm  # noqa: F401  (registration and RecBole fixes in this fresh interpreter)

    share_cpu_threads(nproc)
    config_dict = {**kwargs["config_dict"], "local_rank": local_rank}
    run_recbole(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict,
                saved=kwargs.get("saved", True), queue=kwargs["queue"])
