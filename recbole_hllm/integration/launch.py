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


class ProcessCountError(UserError, ValueError):
    """A process count that cannot run: none, or more GPU processes than GPUs."""


def check_process_count(nproc: int, device_type: str = "cpu", gpu_count: int = 0, gpu_id: str | None = None,
                        world_size: int = -1, cpu_option: str = "--use_gpu=False") -> None:
    """Raise :class:`ProcessCountError` when ``nproc`` processes cannot run here.

    ``device_type`` is ``'cuda'`` when each process takes the GPU ``cuda:<local rank>``
    (``gpu_count`` of them visible), else ``'cpu'``; ``gpu_id`` is RecBole's key, given
    only where RecBole's NCCL code asserts one id per process; ``world_size`` counts the
    processes of every node (-1: ``nproc``); ``cpu_option`` is what runs the processes
    on the CPU instead. A pure function: the entry points pass what they see.
    """
    if nproc < 1:
        raise ProcessCountError(f"--nproc {nproc}: expected 1 or more processes (1 runs in this process, "
                                "N > 1 starts N worker processes)")
    if world_size != -1 and world_size < nproc:
        raise ProcessCountError(f"--world_size {world_size} is less than --nproc {nproc}: world_size counts the "
                                "processes of every node (at least nproc; -1: nproc)")
    if device_type != "cuda":
        return
    if nproc > gpu_count:
        visible = f"{gpu_count} GPU is" if gpu_count == 1 else f"{gpu_count} GPUs are"
        fewer = f"--nproc {gpu_count}" if gpu_count == 1 else f"--nproc {gpu_count} (or fewer)"
        raise ProcessCountError(f"--nproc {nproc} starts one process per GPU, but {visible} visible: pass {fewer}, "
                                f"or {cpu_option} to run {nproc} processes on the CPU (gloo)")
    if gpu_id is not None and len(str(gpu_id).split(",")) < nproc:  # RecBole's assert, as it counts
        raise ProcessCountError(f"--nproc {nproc} needs one GPU id per process, but gpu_id = {str(gpu_id)!r} names "
                                f"{len(str(gpu_id).split(','))}: pass --gpu_id={','.join(map(str, range(nproc)))}")


def run(model, dataset, config_file_list=None, config_dict=None, saved=True, nproc=1, world_size=-1,
        ip="localhost", port="5678", group_offset=0):
    """RecBole's ``quick_start.run`` (same arguments, same result dict from rank 0)."""
    check_process_count(nproc, world_size=world_size)  # the GPU count is checked in each worker, with its config
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
