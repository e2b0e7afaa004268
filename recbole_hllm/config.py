"""The plugin's config: where its yaml defaults live, what each key may hold, which keys
must agree, and a warning for a key that looks misspelled.

Defaults: ``properties/model/<Model>.yaml`` and ``properties/dataset/<name>.yaml``
(:func:`properties_dir`), read by RecBole at its own files' precedence
(:mod:`recbole_hllm.integration.registry`); a model yaml may extend another (:data:`BASE_KEY`).

RecBole ``eval()``s command-line values, so ``--item_llm_layers=abc`` reaches us as a
string: every key below is checked for type and range before any data or model is
loaded, and the error names the key, the value and what is expected. Keys that
must agree with each other are checked by :func:`check_hllm_keys`,
:func:`check_creator_keys` and :func:`check_valid_metric`, which the models and the
trainer call; each check lives here, once.

RecBole also keeps any key it is given, so a misspelled one (``--user_llm_layerz=3``)
would train with the default without a word: :func:`warn_misspelled_keys` warns, once
per key, about a key that neither RecBole nor the plugin knows and that is close to
one of the plugin's own keys.

A key that is renamed keeps working under its old name (:data:`RENAMED_KEYS`): the
user's old key is read as the new one with a warning (:func:`rename_old_keys`), and a
checkpoint saved before the rename loads with its value carried over.
"""
from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from logging import getLogger
from pathlib import Path
from typing import Any, Callable, Iterable

from recbole_hllm.errors import UserError

# -- where the defaults live ------------------------------------------------------------------------
BASE_KEY = "_base_"  # a model yaml's key naming the yaml it extends (HLLMCreator.yaml extends HLLM.yaml)


def properties_dir() -> Path:
    """The plugin's ``properties/`` folder (yaml defaults), from a wheel install or a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "properties", here.parent / "properties"):
        if (candidate / "model").is_dir():
            return candidate
    raise FileNotFoundError(
        f"recbole_hllm's properties/ folder was found neither in {here / 'properties'} "
        f"nor in {here.parent / 'properties'}; the installation is incomplete."
    )


def shipped_datasets_dir() -> Path | None:
    """The repository's ``dataset/`` folder (installed as ``recbole_hllm/datasets``)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "datasets", here.parent / "dataset"):
        if candidate.is_dir():
            return candidate
    return None


# -- what each key may hold ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    expected: str
    check: Callable[[Any], bool]
    optional: bool = False


def _int_at_least(low):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _number_at_least(low, strict=False):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        return v > low if strict else v >= low
    return check


def _one_of(*choices):
    return lambda v: v in choices


_is_str = lambda v: isinstance(v, str) and bool(v)  # noqa: E731
_is_bool = lambda v: isinstance(v, bool)  # noqa: E731
_is_dict = lambda v: isinstance(v, dict)  # noqa: E731
_is_str_list = lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(x, str) for x in v)  # noqa: E731

BACKENDS = ("auto", "gloo", "nccl")  # dist_backend's values (integration/distributed_fixes.py reads them)

# HLLM's keys
RULES: dict[str, Rule] = {
    "text_fields": Rule("a non-empty list of item field names", _is_str_list),
    "item_text_template": Rule("a format string with {field} and/or {value}", _is_str),
    "item_prompt": Rule("a string (may be empty)", lambda v: isinstance(v, str), optional=True),
    "item_text_max_len": Rule("an int >= 1 (tokens)", _int_at_least(1)),
    "missing_text": Rule("'error' or 'item_token'", _one_of("error", "item_token")),
    "item_pooling": Rule("'item_token' or 'mean'", _one_of("item_token", "mean")),
    "train_sequence_level": Rule("true or false", _is_bool),
    "hllm_loss": Rule("'infonce' or 'full_softmax'", _one_of("infonce", "full_softmax")),
    "num_negatives": Rule("an int >= 1", _int_at_least(1)),
    "negative_mask_threshold": Rule("a number in (0, 1]", lambda v: _number_at_least(0, True)(v) and v <= 1),
    "logit_scale_init": Rule("a number > 0", _number_at_least(0, strict=True)),
    "logit_scale_max": Rule("a number > 0", _number_at_least(0, strict=True)),
    "item_embedding_cache": Rule("true or false", _is_bool),
    "item_embed_batch_size": Rule("an int >= 1", _int_at_least(1)),
    "item_llm_trained_layers": Rule("an int >= 1 or null (all layers)", _int_at_least(1), optional=True),
    "item_lower_cache": Rule("true or false", _is_bool, optional=True),
    "item_llm_checkpointing": Rule("true or false", _is_bool, optional=True),
    "torch_threads": Rule("an int >= 1 or null", _int_at_least(1), optional=True),
    "dist_backend": Rule("'auto', 'gloo' or 'nccl'", _one_of(*BACKENDS), optional=True),
    "dist_timeout": Rule("a number of seconds > 0", _number_at_least(0, strict=True), optional=True),
    "trust_remote_code": Rule("true or false", _is_bool, optional=True),
}
_COMPUTE_DTYPE = Rule("'auto' (bf16 on CUDA, else float32), 'native' (bf16 where it is native, else float32), "
                      "'float32', 'bfloat16' or 'float16'", _one_of("auto", "native", "float32", "bfloat16", "float16"))
for _role in ("item", "user"):
    RULES.update({
        f"{_role}_llm": Rule("'smollm2', 'minilm', 'random' or a model directory", _is_str),
        f"{_role}_llm_layers": Rule("an int >= 1 or null (all layers)", _int_at_least(1), optional=True),
        f"{_role}_llm_tuning": Rule("'frozen', 'lora' or 'full'", _one_of("frozen", "lora", "full")),
        f"{_role}_llm_dtype": _COMPUTE_DTYPE,
        f"{_role}_llm_config": Rule("a dict of model config values", _is_dict, optional=True),
        f"{_role}_llm_tokenizer": Rule("an embedded name or a tokenizer directory", _is_str, optional=True),
        f"{_role}_llm_lora": Rule("a dict of peft LoraConfig values", _is_dict, optional=True),
        f"{_role}_llm_train_embeddings": Rule("true or false", _is_bool, optional=True),
    })

# HLLMCreator's own keys
INJECTION_MODES = ("soft_token", "prefix", "both")  # user_injection's values (model/user_conditioning.py reads them)

_weight = Rule("a number >= 0 (0 switches the loss off)", _number_at_least(0))

_CREATOR_ONLY_RULES = {
    "user_prompt": Rule("a string (may be empty)", lambda v: isinstance(v, str), optional=True),
    "creative_prompt": Rule("a template string with {user} once", _is_str),
    "profile_prompt": Rule("a template string with {user} once", _is_str),
    "creative_max_target_len": Rule("an int >= 1 (tokens)", _int_at_least(1)),
    "use_user_embedding": Rule("true or false", _is_bool),
    "creative_user_text": Rule("null or 'profile' (the user's text profile as words at {user})",
                               _one_of("profile"), optional=True),
    "share_user_conditioner": Rule("true or false", _is_bool, optional=True),
    "user_injection": Rule("'soft_token', 'prefix' or 'both'", _one_of(*INJECTION_MODES)),
    "user_prefix_tokens": Rule("an int >= 1 (virtual tokens of the per-layer user prefix)", _int_at_least(1)),
    "user_prefix_hidden_size": Rule("an int >= 1 (width of the prefix MLP)", _int_at_least(1)),
    "user_prefix_init_std": Rule("a number > 0", _number_at_least(0, strict=True)),
    "user_prefix_anchor_text": Rule("a non-empty string", _is_str),
    "user_condition_space": Rule("'user' (U) or 'align' (align_proj(U), the profile-embedding space)",
                                 _one_of("user", "align")),
    "profile_teacher_rate": Rule("a number in [0, 1]", lambda v: _number_at_least(0)(v) and v <= 1),
    "creative_loss_trains_user": Rule("true or false", _is_bool),
    "creative_personal_token_weight": Rule("a number > 0 (1: every title token alike)",
                                           _number_at_least(0, strict=True), optional=True),
    "user_warmup_epochs": Rule("an int >= 0 (first epochs that train the user side only), less than epochs",
                               _int_at_least(0)),
    "shuffled_u_pairs": Rule("an int >= 0 or null (null: every test pair; 0: off)", _int_at_least(0),
                             optional=True),
    "match_negatives": Rule("an int >= 1", _int_at_least(1)),
    "match_hidden_size": Rule("an int >= 1", _int_at_least(1)),
    "generation_max_new_tokens": Rule("an int >= 1", _int_at_least(1)),
    "generation_do_sample": Rule("true or false", _is_bool),
    "generation_temperature": Rule("a number > 0", _number_at_least(0, strict=True)),
    "generation_top_p": Rule("a number in (0, 1]", lambda v: _number_at_least(0, True)(v) and v <= 1),
    "generation_top_k": Rule("an int >= 1", _int_at_least(1)),
    "generation_batch_size": Rule("an int >= 1", _int_at_least(1)),
    "generation_user_guidance": Rule("a number >= 0 (0: plain decoding)", _number_at_least(0), optional=True),
    "generation_guidance_contrast": Rule("'anchor' or 'batch_mean'", lambda v: v in ("anchor", "batch_mean"),
                                         optional=True),
    "generation_dtype": Rule("'auto', 'float32', 'bfloat16' or 'float16' (null: the weights' dtype)",
                             _one_of("auto", "float32", "bfloat16", "float16"), optional=True),
    "generation_metrics": Rule("a list of metric names", lambda v: isinstance(v, (list, tuple))),
    "generate_on_valid": Rule("true or false", _is_bool),
    "generation_valid_limit": Rule("an int >= 1 or null (all)", _int_at_least(1), optional=True),
    "creative_llm": Rule("'smollm2', 'random' or a causal LM directory", _is_str),
    "creative_llm_layers": Rule("an int >= 1 or null (all layers)", _int_at_least(1), optional=True),
    "creative_llm_tuning": Rule("'frozen', 'lora' or 'full'", _one_of("frozen", "lora", "full")),
    "creative_llm_dtype": _COMPUTE_DTYPE,
    "creative_llm_attention": Rule("'sdpa' or 'eager'", _one_of("sdpa", "eager"), optional=True),
    "generation_attention": Rule("'sdpa' or 'eager'", _one_of("sdpa", "eager"), optional=True),
    "creative_llm_config": Rule("a dict of model config values", _is_dict, optional=True),
    "creative_llm_tokenizer": Rule("an embedded name or a tokenizer directory", _is_str, optional=True),
    "creative_llm_lora": Rule("a dict of peft LoraConfig values", _is_dict, optional=True),
    "creative_llm_activation_checkpointing": Rule("an int >= 0 (0: off; n: every n-th layer)", _int_at_least(0),
                                                  optional=True),
    "creative_llm_train_embeddings": Rule("true or false", _is_bool, optional=True),
    "creative_tuned_layers": Rule("an int >= 1 or null (all layers)", _int_at_least(1), optional=True),
    "creative_llm_fsdp": Rule("true or false (shard the creative LLM's layers over the processes)", _is_bool,
                              optional=True),
    "creative_title_field": Rule("an item field name", _is_str),
    "generation_share_prefix": Rule("true or false", _is_bool, optional=True),
    "generation_drop_finished_rows": Rule("true or false", _is_bool, optional=True),
    "generation_merge_lora": Rule("true or false", _is_bool, optional=True),
    "creative_file": Rule("a path to a .creative file or null", _is_str, optional=True),
    "creative_learning_rate": Rule("a number > 0 or null (= learning_rate)", _number_at_least(0, strict=True),
                                   optional=True),
    "projector_learning_rate": Rule("a number > 0 or null (= learning_rate)", _number_at_least(0, strict=True),
                                    optional=True),
    **{f"{name}_loss_weight": _weight for name in ("rec", "creative", "match", "align", "recon")},
}
CREATOR_RULES = {**RULES, **_CREATOR_ONLY_RULES}  # HLLMCreator's keys: HLLM's and its own


class ConfigValueError(UserError, ValueError):
    pass


def validate_config(config, rules: dict[str, Rule] = RULES) -> None:
    """Raise :class:`ConfigValueError` naming every key whose value breaks its rule."""
    problems = []
    for key, rule in rules.items():
        value = config[key] if key in config else None
        if value is None and rule.optional:
            continue
        if value is None or not rule.check(value):
            problems.append(f"{key} = {value!r} (expected {rule.expected})")
    trained_layers = config["item_llm_trained_layers"] if "item_llm_trained_layers" in config else None
    if trained_layers and config["item_llm_tuning"] == "frozen":
        problems.append(f"item_llm_trained_layers = {trained_layers!r} (expected null with "
                        "item_llm_tuning = 'frozen': only a trained item LLM has layers to train)")
    if problems:
        raise ConfigValueError("Invalid recbole_hllm config: " + "; ".join(problems))


# -- keys that must agree ------------------------------------------------------------------------------
def check_hllm_keys(config) -> None:
    """HLLM's keys: each against its rule, then those that must agree with each other."""
    validate_config(config, RULES)
    _check_hllm_pairs(config)


def check_creator_keys(config) -> None:
    """HLLMCreator's keys (HLLM's among them): each against its rule, then those that must agree."""
    validate_config(config, CREATOR_RULES)
    _check_hllm_pairs(config)
    if config["user_warmup_epochs"] >= config["epochs"]:
        raise ConfigValueError(f"user_warmup_epochs = {config['user_warmup_epochs']} must be less than epochs = "
                               f"{config['epochs']}: the warm-up epochs never train the creative LLM")
    # generation_user_guidance with sampling or without U: off, with a warning (HLLMCreator._applicable_guidance)
    if (config["generation_user_guidance"] and config["generation_guidance_contrast"] == "anchor"
            and config["user_injection"] != "prefix"):
        raise ConfigValueError(f"generation_guidance_contrast = 'anchor' needs user_injection = 'prefix' (not "
                               f"{config['user_injection']!r}): use generation_guidance_contrast: batch_mean")
    if config["profile_teacher_rate"] and config["user_condition_space"] != "align":
        raise ConfigValueError("profile_teacher_rate > 0 needs user_condition_space: align (the profile "
                               "embedding stands in for the projection of U in the alignment space)")


def _check_hllm_pairs(config) -> None:
    if config["hllm_loss"] == "full_softmax" and config["item_llm_tuning"] != "frozen":
        raise ConfigValueError("hllm_loss = 'full_softmax' needs item_llm_tuning = 'frozen' "
                               "(all item embeddings every step); use 'infonce' with a trainable item LLM.")


def check_valid_metric(config, generation_metrics: Iterable[str]) -> None:
    """``valid_metric`` may name one of ``generation_metrics`` only when titles are generated
    at every validation (``generate_on_valid``)."""
    if config["valid_metric"].lower() in generation_metrics and not config["generate_on_valid"]:
        raise ConfigValueError(f"valid_metric = {config['valid_metric']!r} is a generation metric: "
                               "set generate_on_valid: True (titles are then generated at every validation)")


# -- renamed keys --------------------------------------------------------------------------------------
# old name -> new name. The old name said "soft token" although the map it shares is
# whichever U -> creative-LLM conditioner user_injection picks (the prefix by default).
RENAMED_KEYS = {"share_soft_token_projector": "share_user_conditioner"}


def rename_old_keys(given: dict, warn: bool = True) -> dict:
    """Move each old key of ``given`` (a config dict, changed in place) to its new name,
    with a warning unless ``warn`` is false (a checkpoint's config: the user did not type it).
    Both names with different values is an error; returns ``given``."""
    for old, new in RENAMED_KEYS.items():
        if old not in given:
            continue
        value = given.pop(old)
        if new in given and given[new] != value:
            raise ConfigValueError(f"{old} = {value!r} and {new} = {given[new]!r}: {old} is the old name of "
                                   f"{new}; give {new} only")
        given[new] = value
        if warn and old not in _WARNED_KEYS:
            _WARNED_KEYS.add(old)
            getLogger(__name__).warning("recbole_hllm: config key %r is deprecated and will be removed; it is "
                                        "read as %r, the name to use from now on", old, new)
    return given


# -- misspelled keys -----------------------------------------------------------------------------------
# keys RecBole's code and run_recbole's flags set or read that no RecBole yaml file holds
RECBOLE_RUNTIME_KEYS = frozenset({
    "model", "dataset", "config_files", "nproc", "world_size", "ip", "port", "offset", "group_offset",
    "local_rank", "single_spec", "device", "encoding", "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type",
    "valid_neg_sample_args", "test_neg_sample_args", "params_file", "output_file", "debug",
})
_WARNED_KEYS: set[str] = set()


@functools.lru_cache(maxsize=None)
def _yaml_keys(folder: str) -> frozenset[str]:
    """Top-level keys of every yaml file under ``folder``."""
    import yaml

    keys = set()
    for path in sorted(Path(folder).rglob("*.yaml")):
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict):
            keys.update(k for k in data if isinstance(k, str))
    return frozenset(keys)


@functools.lru_cache(maxsize=None)
def recbole_keys() -> frozenset[str]:
    """Every key RecBole knows: its properties files, its argument lists and :data:`RECBOLE_RUNTIME_KEYS`."""
    import importlib.util

    from recbole.utils import argument_list

    root = Path(importlib.util.find_spec("recbole").submodule_search_locations[0])
    lists = (argument_list.general_arguments + argument_list.training_arguments
             + argument_list.evaluation_arguments + argument_list.dataset_arguments)
    return _yaml_keys(str(root / "properties")) | frozenset(lists) | RECBOLE_RUNTIME_KEYS


@functools.lru_cache(maxsize=None)
def plugin_keys() -> frozenset[str]:
    """The plugin's own keys: its model yaml files and the rules in this module."""
    return (_yaml_keys(str(properties_dir() / "model")) | frozenset(CREATOR_RULES)) - {BASE_KEY} - recbole_keys()


def misspelled_keys(given: Iterable[str], known: Iterable[str], candidates: Iterable[str],
                    cutoff: float = 0.8) -> list[tuple[str, str]]:
    """``(key, suggestion)`` for each key of ``given`` that is neither in ``known`` nor in
    ``candidates`` and is close to a candidate (``difflib.get_close_matches``)."""
    known, candidates = set(known) | set(candidates), sorted(candidates)
    found = []
    for key in given:
        if key in known:
            continue
        match = difflib.get_close_matches(key, candidates, n=1, cutoff=cutoff)
        if match:
            found.append((key, match[0]))
    return found


def warn_misspelled_keys(given: Iterable[str], loaded: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Warn (once per key and process) about the keys of ``given`` (the user's) that look
    like a misspelled plugin key; ``loaded`` are the keys of the yaml files read for this
    run (known too). Returns what it warned about."""
    loaded = set(loaded)
    given = [k for k in given if k not in loaded and k not in RULES]
    if not given:  # the usual case: no yaml is read
        return []
    plugin = plugin_keys()
    known = recbole_keys() | _yaml_keys(str(properties_dir())) | loaded
    found = [(key, match) for key, match in misspelled_keys(given, known, plugin) if key not in _WARNED_KEYS]
    for key, match in found:
        _WARNED_KEYS.add(key)
        getLogger(__name__).warning("recbole_hllm: config key %r is not a recbole_hllm or RecBole key, so "
                                    "nothing reads it: did you mean %r?", key, match)
    return found
