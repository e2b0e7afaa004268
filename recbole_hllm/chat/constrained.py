"""JSON-schema-constrained decoding for the local backend (lm-format-enforcer).

A small model asked for JSON writes prose, or a list that never closes; masking every
token that would break the schema makes each reply parse, and ``maxItems`` /
``maxLength`` in the schema bound how long it can ramble. lm-format-enforcer's own
transformers integration imports names transformers 5 removed, so this module builds
its tokenizer table itself and plugs its ``TokenEnforcer`` into ``generate`` through
``prefix_allowed_tokens_fn``.
"""
from __future__ import annotations

import functools
import json


class SchemaConstraint:
    """Builds, per schema, the ``prefix_allowed_tokens_fn`` for one generate call."""

    def __init__(self, tokenizer, eos_token_ids: list[int]):
        self.tokenizer, self.eos_token_ids = tokenizer, list(eos_token_ids)
        self._data = None

    @property
    def tokenizer_data(self):
        """The enforcer's view of the vocabulary (a few seconds to build; built once)."""
        if self._data is None:
            from lmformatenforcer.tokenenforcer import TokenEnforcerTokenizerData

            vocab_size = len(self.tokenizer)
            self._data = TokenEnforcerTokenizerData(
                _regular_tokens(self.tokenizer, vocab_size), functools.partial(_decode, self.tokenizer),
                self.eos_token_ids, False, vocab_size)
        return self._data

    def allowed_tokens_fn(self, schema: dict):
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer

        enforcer = TokenEnforcer(self.tokenizer_data, JsonSchemaParser(json.loads(json.dumps(schema))))

        def allowed(batch_id: int, tokens) -> list[int]:
            return enforcer.get_allowed_tokens(tokens.tolist()).allowed_tokens

        return allowed


def _regular_tokens(tokenizer, vocab_size: int) -> list[tuple[int, str, bool]]:
    """(id, text, starts a word) for every non-special token; a token decoded after "0"
    shows whether it carries a leading space."""
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    special = set(tokenizer.all_special_ids)
    tokens = []
    for token_id in range(vocab_size):
        if token_id in special:
            continue
        after_zero = tokenizer.decode([zero, token_id])[1:]
        alone = tokenizer.decode([token_id])
        tokens.append((token_id, after_zero, len(after_zero) > len(alone)))
    return tokens


def _decode(tokenizer, token_ids: list[int]) -> str:
    return tokenizer.decode(token_ids).rstrip("\ufffd")
