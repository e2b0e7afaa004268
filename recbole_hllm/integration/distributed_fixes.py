"""RecBole 1.2.1's distributed mode, made to run without CUDA: the table :data:`FIXES`.

RecBole's engine (``--nproc``, ``--world_size``, ``--ip``, ``--port``, ``--group_offset``;
workers started with ``torch.multiprocessing.spawn``) is kept; three narrow fixes,
applied by :func:`recbole_hllm.integration.install`:

* ``Config._init_device`` always starts an NCCL group and calls
  ``torch.cuda.set_device``, and asserts one ``gpu_id`` per process, so ``nproc > 1``
  dies on a CPU-only machine. When CUDA is absent, ``use_gpu: False`` or
  ``dist_backend: gloo`` is set, the group is started with gloo (timeout
  ``dist_timeout`` seconds) and the device is the CPU (or ``cuda:<local_rank>`` when
  CUDA is there, ``use_gpu`` is on and gloo was asked for). With CUDA and
  ``dist_backend: auto`` / ``nccl`` RecBole's own code runs, unchanged. Either way a
  process count that cannot run (more GPU processes than GPUs, fewer ``gpu_id`` entries
  than processes for NCCL) fails first, with one line that says what to pass
  (:func:`~recbole_hllm.integration.launch.check_process_count`), not with RecBole's
  bare ``assert`` or CUDA's ``invalid device ordinal``.
* ``AbstractTrainer.__init__`` wraps the model in ``DistributedDataParallel(model,
  device_ids=[local_rank])``, which DDP refuses for a CPU module; on the CPU the
  wrapper is built without ``device_ids`` (and without SyncBatchNorm, CUDA-only).
* Evaluation loaders get torch's ``DistributedSampler``, which pads the last shard by
  repeating users, so the metrics count some users twice. For this plugin's models,
  whose trainer gathers every rank's rankings before computing metrics, evaluation
  shards are strided without padding: every user is evaluated exactly once.
"""
from __future__ import annotations

import contextlib
import datetime

import torch

from recbole_hllm.config import BACKENDS  # one list of dist_backend's values
from recbole_hllm.integration import patching
from recbole_hllm.integration.patching import Fix
from recbole_hllm.integration.registry import is_plugin_model_name


def choose_backend(requested: str | None, use_gpu: bool = True) -> str:
    """``auto`` -> NCCL when CUDA is available (and ``use_gpu``), else gloo."""
    requested = (requested or "auto").lower()
    if requested not in BACKENDS:
        raise ValueError(f"dist_backend = {requested!r}: expected one of {', '.join(BACKENDS)}")
    if requested == "auto":
        return "nccl" if use_gpu and torch.cuda.is_available() else "gloo"
    if requested == "nccl" and not torch.cuda.is_available():
        raise ValueError("dist_backend = 'nccl' needs CUDA, and none is available: use 'gloo' (or 'auto')")
    return requested


def gloo_device_init(original):
    def _init_device(self):
        final = self.final_config_dict
        if "local_rank" not in final:
            return original(self)
        backend = choose_backend(final.get("dist_backend"), final.get("use_gpu", True))
        use_cuda = backend == "nccl" or (torch.cuda.is_available() and final.get("use_gpu", True))
        from recbole_hllm.integration.launch import check_process_count

        check_process_count(final["nproc"], "cuda" if use_cuda else "cpu",
                            torch.cuda.device_count() if use_cuda else 0,
                            gpu_id=_gpu_id_string(final["gpu_id"]) if backend == "nccl" else None)
        if backend == "nccl":
            return original(self)
        local_rank = final["local_rank"]
        final["gpu_id"] = _gpu_id_string(final["gpu_id"])
        torch.distributed.init_process_group(
            backend="gloo", rank=local_rank + final["offset"], world_size=final["world_size"],
            init_method=f"tcp://{final['ip']}:{final['port']}",
            timeout=datetime.timedelta(seconds=float(final.get("dist_timeout") or 1800)))
        if use_cuda:
            torch.cuda.set_device(local_rank)
        final["device"] = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
        final["single_spec"] = False
        if local_rank != 0:  # as RecBole: only rank 0 logs
            final.update(state="error", show_progress=False, verbose=False)

    return _init_device


def _gpu_id_string(gpu_id) -> str:
    """RecBole's ``gpu_id`` as RecBole's ``_init_device`` writes it: ``(0, 1)`` -> ``'0,1'``."""
    return ",".join(map(str, gpu_id)) if isinstance(gpu_id, tuple) else str(gpu_id)


def cpu_ddp_trainer_init(original):
    def __init__(self, config, model):
        if config["single_spec"] or config["device"].type != "cpu":
            return original(self, config, model)
        from torch.nn.parallel import DistributedDataParallel

        self.config = config
        self.model = model
        self.distributed_model = DistributedDataParallel(model)  # CPU: no device_ids

    return __init__


class StridedShardSampler(torch.utils.data.Sampler):
    """Indices ``rank, rank + world, ...`` of ``range(len(data_source))``: no padding, no repeats."""

    def __init__(self, data_source, num_replicas=None, rank=None, shuffle=False, drop_last=False, **_):
        self.indices = list(range(len(data_source)))[
            (torch.distributed.get_rank() if rank is None else rank)::
            (torch.distributed.get_world_size() if num_replicas is None else num_replicas)]

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)

    def set_epoch(self, epoch):  # API parity with DistributedSampler
        pass


@contextlib.contextmanager
def _sampler_class(replacement):
    module = torch.utils.data.distributed
    original = module.DistributedSampler
    module.DistributedSampler = replacement
    try:
        yield
    finally:
        module.DistributedSampler = original


def unpadded_eval_shards(original, is_plugin_model):
    def __init__(self, config, dataset, sampler, shuffle=False):
        if config["single_spec"] or shuffle or not is_plugin_model(config["model"]):
            return original(self, config, dataset, sampler, shuffle)
        with _sampler_class(StridedShardSampler):
            return original(self, config, dataset, sampler, shuffle)

    return __init__


def start_gloo_groups_without_cuda() -> None:
    from recbole.config import Config

    patching.replace(Config, "_init_device", gloo_device_init)


def wrap_cpu_models_in_ddp_without_device_ids() -> None:
    from recbole.trainer.trainer import AbstractTrainer

    patching.replace(AbstractTrainer, "__init__", cpu_ddp_trainer_init)


def shard_plugin_evaluation_without_padding() -> None:
    from recbole.data.dataloader.abstract_dataloader import AbstractDataLoader

    patching.replace(AbstractDataLoader, "__init__",
                     lambda original: unpadded_eval_shards(original, is_plugin_model_name))


T = "tests/test_distributed.py::"
FIXES = [
    Fix("gloo_groups", "Config._init_device always starts an NCCL group and calls torch.cuda.set_device, so nproc > 1 "
        "dies without CUDA; with no CUDA, use_gpu: False or dist_backend: gloo the group is gloo, and a process "
        "count that cannot run fails first with one line", "tests/test_bad_input.py::"
        "test_run_recbole_worker_checks_gpus_before_recbole_asserts", start_gloo_groups_without_cuda),
    Fix("cpu_ddp", "AbstractTrainer wraps the model in DistributedDataParallel(model, device_ids=[local_rank]), which "
        "DDP refuses for a CPU module; on the CPU the wrapper has no device_ids",
        T + "test_two_process_creator_run_matches_one_process", wrap_cpu_models_in_ddp_without_device_ids),
    Fix("unpadded_eval_shards", "torch's DistributedSampler pads the last shard with repeated users, so metrics count "
        "some users twice; for the plugin's models, whose trainer gathers every rank's rankings, evaluation shards "
        "are strided without padding", T + "test_two_process_creator_run_matches_one_process",
        shard_plugin_evaluation_without_padding),
]


def apply_all() -> dict:
    """Apply every fix of :data:`FIXES` once."""
    return patching.apply_fixes(FIXES)
