"""Checks on the plugin's config keys, so a wrong value fails early with its name.

RecBole ``eval()``s command-line values, so ``--item_llm_layers=abc`` reaches us as a
string: every key below is checked for type and range before any data or model is
loaded, and the error names the key, the value and what is expected.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from recbole_hllm.errors import UserError


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
    "dist_backend": Rule("'auto', 'gloo' or 'nccl'", _one_of("auto", "gloo", "nccl"), optional=True),
    "dist_timeout": Rule("a number of seconds > 0", _number_at_least(0, strict=True), optional=True),
    "trust_remote_code": Rule("true or false", _is_bool, optional=True),
}
for _role in ("item", "user"):
    RULES.update({
        f"{_role}_llm": Rule("'smollm2', 'minilm', 'random' or a model directory", _is_str),
        f"{_role}_llm_layers": Rule("an int >= 1 or null (all layers)", _int_at_least(1), optional=True),
        f"{_role}_llm_tuning": Rule("'frozen', 'lora' or 'full'", _one_of("frozen", "lora", "full")),
        f"{_role}_llm_dtype": Rule("'auto', 'float32', 'bfloat16' or 'float16'",
                                   _one_of("auto", "float32", "bfloat16", "float16")),
        f"{_role}_llm_config": Rule("a dict of model config values", _is_dict, optional=True),
        f"{_role}_llm_tokenizer": Rule("an embedded name or a tokenizer directory", _is_str, optional=True),
        f"{_role}_llm_lora": Rule("a dict of peft LoraConfig values", _is_dict, optional=True),
        f"{_role}_llm_train_embeddings": Rule("true or false", _is_bool, optional=True),
    })


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
