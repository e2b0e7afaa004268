"""Loads one LLM backbone (item, user or creative) as the config describes.

A backbone comes from one of three sources:

* an embedded default (``smollm2``, ``minilm``; see :mod:`recbole_hllm.backbones.embedded`),
* a local Hugging Face model directory,
* ``random``: a randomly initialised model built from ``<role>_llm_config`` (what
  tests use), with the tokenizer of ``<role>_llm_tokenizer``.

and is then optionally cut to its first N layers (so a pretrained model fits a CPU),
put in a tuning mode (``frozen``, ``lora`` via peft, or ``full``) and stored in mixed
precision: ``<role>_llm_dtype`` is the dtype the backbone *computes* in. Frozen weights
are stored in it; trainable weights always stay float32 (an optimizer that updates
bf16 weights in place loses every update below bf16's precision), and the forward runs
under :func:`compute_precision` (autocast) to that dtype.
"""
from __future__ import annotations

import contextlib
import inspect
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from logging import getLogger
from pathlib import Path

import torch
from torch import nn

from recbole_hllm.backbones.embedded import EMBEDDED_MODELS, describe_embedded, embedded_model_dir
from recbole_hllm.errors import UserFileNotFoundError

TUNING_MODES = ("frozen", "lora", "full")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class BackboneSpec:
    """Everything needed to build one backbone; read from ``<role>_llm*`` config keys."""

    role: str
    source: str
    num_layers: int | None = None
    tuning: str = "frozen"
    dtype: str = "auto"
    random_config: dict = field(default_factory=dict)
    tokenizer: str | None = None
    lora: dict = field(default_factory=dict)
    trust_remote_code: bool = False
    seed: int = 0
    train_embeddings: bool = False

    @classmethod
    def from_config(cls, config, role: str) -> "BackboneSpec":
        def get(key, default=None):
            value = config[f"{role}_{key}"]
            return default if value is None else value

        return cls(
            role=role,
            source=str(get("llm")),
            num_layers=get("llm_layers"),
            tuning=get("llm_tuning", "frozen"),
            dtype=str(get("llm_dtype", "auto")),
            random_config=dict(get("llm_config", {})),
            tokenizer=get("llm_tokenizer"),
            lora=dict(get("llm_lora", {})),
            trust_remote_code=bool(config["trust_remote_code"] or False),
            seed=int(config["seed"] or 0),
            train_embeddings=bool(config[f"{role}_llm_train_embeddings"] or False),
        )

    def identity(self) -> str:
        """A string that changes whenever the backbone's weights or truncation would."""
        path = resolve_model_dir(self.source, f"{self.role}_llm") if self.source != "random" else \
            f"random(seed={self.seed})"
        stamp = ""
        if self.source != "random":
            weights = sorted(Path(path).glob("*.safetensors")) + sorted(Path(path).glob("*.bin"))
            stamp = ",".join(f"{w.name}:{w.stat().st_size}:{int(w.stat().st_mtime)}" for w in weights)
        return f"{self.source}|{path}|{stamp}|layers={self.num_layers}|{sorted(self.random_config.items())}"


def resolve_model_dir(source: str, setting: str) -> Path:
    """Map a model name to a model directory, with a clear error when absent that names
    ``setting``, where the user gave it (a ``<role>_llm`` config key or a flag)."""
    if source in EMBEDDED_MODELS:
        return embedded_model_dir(source)
    path = Path(os.path.expanduser(source))
    if not path.is_dir() or not (path / "config.json").is_file():
        random_hint = f", 'random' (with {setting}_config)" if setting.endswith("_llm") else ""
        raise UserFileNotFoundError(
            f"{setting} = {source!r}: no Hugging Face model directory (with config.json) there. "
            f"Give a local model directory{random_hint} or an embedded default ({describe_embedded()})."
        )
    return path


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` is bfloat16 on CUDA devices that support it and float32 elsewhere (a CPU
    run computes exactly as a float32 reference); ``native`` is bfloat16 wherever bf16 is
    native (:func:`fast_bf16`: also CPUs with AVX512-BF16 or AMX, where it is about twice as
    fast) and float32 elsewhere."""
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if name == "native":
        return torch.bfloat16 if fast_bf16(device) else torch.float32
    return DTYPES[name]


def fast_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matrix multiplies are native on ``device``: CUDA with bf16, or a
    CPU with AVX512-BF16 or AMX (there bf16 is several times faster than float32;
    elsewhere it is emulated and slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check() for check in checks if check is not None)


def resolve_generation_dtype(name: str, model_dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype generation computes in: ``auto`` is bfloat16 where it is native (see
    :func:`fast_bf16`), else the model's own dtype; other names are taken as they are.
    None (a checkpoint from before the key existed) keeps the model's dtype."""
    if name is None:
        return model_dtype
    if name == "auto":
        return torch.bfloat16 if fast_bf16(device) else model_dtype
    return DTYPES[name]


def load_tokenizer(spec: BackboneSpec):
    from transformers import AutoTokenizer

    source = spec.tokenizer if spec.source == "random" else spec.source
    if source is None:
        raise ValueError(f"{spec.role}_llm = 'random' needs {spec.role}_llm_tokenizer (an embedded name or a directory)")
    tokenizer = AutoTokenizer.from_pretrained(
        resolve_model_dir(str(source), f"{spec.role}_llm"), trust_remote_code=spec.trust_remote_code
    )
    if tokenizer.pad_token is None:
        # Causal LMs often ship without a pad token; padding positions are masked anyway.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_backbone(spec: BackboneSpec, device: torch.device, causal_lm: bool = False):
    """Build the backbone model (without LM head unless ``causal_lm``) and its tokenizer."""
    from transformers import AutoModel, AutoModelForCausalLM

    auto_class = AutoModelForCausalLM if causal_lm else AutoModel
    tokenizer = load_tokenizer(spec)
    # Own RNG stream: the weights depend only on the seed, and loading (which may happen
    # lazily, e.g. on an item-embedding cache miss) never shifts the training RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = _build(spec, auto_class, tokenizer, device)
    getLogger(__name__).info("%s LLM %s: %s layers, tuning=%s, %s", spec.role, spec.source,
                             model.config.num_hidden_layers, spec.tuning, describe_precision(model, device, spec))
    return model.to(device), tokenizer


def store_mixed_precision(model: nn.Module, compute_dtype: torch.dtype) -> nn.Module:
    """Trainable parameters in float32, frozen ones in ``compute_dtype`` (in place)."""
    for param in model.parameters():
        wanted = torch.float32 if param.requires_grad else compute_dtype
        if param.is_floating_point() and param.dtype != wanted:
            param.data = param.data.to(wanted)
    return model


def compute_precision(device: torch.device | str, dtype: torch.dtype):
    """The context a backbone's forward runs in: autocast to ``dtype`` when it is below
    float32 (trainable float32 weights then compute in ``dtype``), else nothing."""
    device_type = torch.device(device).type
    if dtype == torch.float32 or device_type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


def describe_precision(model: nn.Module, device: torch.device, spec: BackboneSpec) -> str:
    """One log phrase: which weights are stored in which dtype, and the compute dtype."""
    counts: dict[tuple[bool, torch.dtype], int] = {}
    for param in model.parameters():
        key = (param.requires_grad, param.dtype)
        counts[key] = counts.get(key, 0) + param.numel()
    parts = [f"{'trainable' if trainable else 'frozen'} {str(dtype).removeprefix('torch.')}: {n:,}"
             for (trainable, dtype), n in sorted(counts.items(), key=lambda kv: (not kv[0][0], str(kv[0][1])))]
    compute = str(resolve_dtype(spec.dtype, device)).removeprefix("torch.")
    return f"weights ({'; '.join(parts) or 'none'}), compute {compute}"


def _build(spec: BackboneSpec, auto_class, tokenizer, device: torch.device):
    from transformers import AutoConfig

    dtype = resolve_dtype(spec.dtype, device)
    overrides = {"num_hidden_layers": spec.num_layers} if spec.num_layers else {}
    if spec.source == "random":
        kwargs = dict(spec.random_config)
        model_type = kwargs.pop("model_type", "llama")
        kwargs.setdefault("vocab_size", len(tokenizer))
        kwargs.update(overrides)
        config = AutoConfig.for_model(model_type, **kwargs)
        model = auto_class.from_config(config, dtype=dtype)
    else:
        path = resolve_model_dir(spec.source, f"{spec.role}_llm")
        with _quiet_load_report(expected=bool(overrides)):
            model = auto_class.from_pretrained(
                path, dtype=dtype, trust_remote_code=spec.trust_remote_code, **overrides
            )
    return store_mixed_precision(apply_tuning(model, spec), dtype)


@contextmanager
def _quiet_load_report(expected: bool):
    """Cutting layers makes transformers list every dropped layer's weights as
    UNEXPECTED; that report is expected then, so it is silenced (errors still show)."""
    from transformers.utils import logging as hf_logging

    if not expected:
        yield
        return
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def apply_tuning(model: nn.Module, spec: BackboneSpec) -> nn.Module:
    """Freeze, wrap with LoRA adapters, or leave fully trainable."""
    if spec.tuning == "frozen":
        model.requires_grad_(False)
        return model
    if spec.tuning == "lora":
        from peft import LoraConfig, get_peft_model

        lora = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0}
        lora.update(spec.lora)
        return get_peft_model(model, LoraConfig(**lora))
    if not spec.train_embeddings:
        # The vocabulary tables (tied input/output for SmolLM2: 28 M params) would
        # dominate the backward pass and optimizer state of a small CPU fine-tune.
        for module in (model.get_input_embeddings(), getattr(model, "get_output_embeddings", lambda: None)()):
            if module is not None:
                module.requires_grad_(False)
    return model


def base_model(model: nn.Module) -> nn.Module:
    """The Hugging Face model itself, under peft's wrapper where there is one (LoRA)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def forward_takes(model: nn.Module, argument: str) -> bool:
    """Whether the model's forward (under peft's wrapper, if any) names ``argument``: the
    arguments a causal LM takes differ across transformers versions and models."""
    return argument in inspect.signature(base_model(model).forward).parameters


def hidden_size(model: nn.Module) -> int:
    config = model.config
    return getattr(config, "hidden_size", None) or getattr(config, "d_model")


def input_embeddings(model: nn.Module) -> nn.Module:
    return model.get_input_embeddings()
