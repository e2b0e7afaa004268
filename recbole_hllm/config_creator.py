"""Config checks for HLLMCreator's own keys (HLLM's keys are checked by config.RULES)."""
from recbole_hllm.config import RULES, Rule, _int_at_least, _is_bool, _is_dict, _is_str, _number_at_least, _one_of

_weight = Rule("a number >= 0 (0 switches the loss off)", _number_at_least(0))

CREATOR_RULES = {
    "user_prompt": Rule("a string (may be empty)", lambda v: isinstance(v, str), optional=True),
    "creative_prompt": Rule("a template string with {user} once", _is_str),
    "profile_prompt": Rule("a template string with {user} once", _is_str),
    "creative_max_target_len": Rule("an int >= 1 (tokens)", _int_at_least(1)),
    "use_user_embedding": Rule("true or false", _is_bool),
    "match_negatives": Rule("an int >= 1", _int_at_least(1)),
    "match_hidden_size": Rule("an int >= 1", _int_at_least(1)),
    "generation_max_new_tokens": Rule("an int >= 1", _int_at_least(1)),
    "generation_do_sample": Rule("true or false", _is_bool),
    "generation_temperature": Rule("a number > 0", _number_at_least(0, strict=True)),
    "generation_top_p": Rule("a number in (0, 1]", lambda v: _number_at_least(0, True)(v) and v <= 1),
    "generation_top_k": Rule("an int >= 1", _int_at_least(1)),
    "generation_batch_size": Rule("an int >= 1", _int_at_least(1)),
    "generation_metrics": Rule("a list of metric names", lambda v: isinstance(v, (list, tuple))),
    "generate_on_valid": Rule("true or false", _is_bool),
    "generation_valid_limit": Rule("an int >= 1 or null (all)", _int_at_least(1), optional=True),
    "creative_llm": Rule("'smollm2', 'random' or a causal LM directory", _is_str),
    "creative_llm_layers": Rule("an int >= 1 or null (all layers)", _int_at_least(1), optional=True),
    "creative_llm_tuning": Rule("'frozen', 'lora' or 'full'", _one_of("frozen", "lora", "full")),
    "creative_llm_dtype": Rule("'auto', 'float32', 'bfloat16' or 'float16'",
                               _one_of("auto", "float32", "bfloat16", "float16")),
    "creative_llm_config": Rule("a dict of model config values", _is_dict, optional=True),
    "creative_llm_tokenizer": Rule("an embedded name or a tokenizer directory", _is_str, optional=True),
    "creative_llm_lora": Rule("a dict of peft LoraConfig values", _is_dict, optional=True),
    "creative_llm_activation_checkpointing": Rule("an int >= 0 (0: off; n: every n-th layer)", _int_at_least(0),
                                                  optional=True),
    "creative_llm_train_embeddings": Rule("true or false", _is_bool, optional=True),
    "creative_title_field": Rule("an item field name", _is_str),
    "generation_share_prefix": Rule("true or false", _is_bool, optional=True),
    "creative_file": Rule("a path to a .creative file or null", _is_str, optional=True),
    "creative_learning_rate": Rule("a number > 0 or null (= learning_rate)", _number_at_least(0, strict=True),
                                   optional=True),
    "projector_learning_rate": Rule("a number > 0 or null (= learning_rate)", _number_at_least(0, strict=True),
                                    optional=True),
    **{f"{name}_loss_weight": _weight for name in ("rec", "creative", "match", "align", "recon")},
}
CREATOR_RULES = {**RULES, **CREATOR_RULES}
