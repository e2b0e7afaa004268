"""Chat backend running a Hugging Face causal LM in this process.

Requests are grouped by decoding settings, sorted by prompt length and generated in
batches (left padding, KV cache), which is what makes a CPU run affordable: see
``benchmarks/construction.py`` for batched vs one-at-a-time throughput. With
``stop_at_json`` a sequence stops as soon as it has produced one complete JSON object,
so a small model that would ramble on after the closing brace costs nothing more.
A request with ``json_schema`` is decoded under that schema (``constrained.py``).
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch

from recbole_hllm.backbones.backbone import resolve_dtype, resolve_model_dir
from recbole_hllm.chat.backend import ChatBackend, ChatReply, ChatRequest
from recbole_hllm.chat.constrained import SchemaConstraint
from recbole_hllm.chat.json_text import json_object_end
from recbole_hllm.errors import InvalidInputError


class LocalChatBackend(ChatBackend):
    name = "local"

    def __init__(self, model: str = "smollm2", device: str = "cpu", dtype: str = "auto",
                 batch_size: int = 8, threads: int | None = None, stop_at_json: bool = False,
                 seed: int = 0, trust_remote_code: bool = False, model_setting: str = "--model"):
        """``model``: an embedded name (``smollm2``) or a Hugging Face model directory;
        ``model_setting``: where the user gave it (the flag a bad value's error names)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        super().__init__()
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.batch_size, self.stop_at_json, self.seed = batch_size, stop_at_json, seed
        path: Path = resolve_model_dir(model, model_setting)
        self.model_name = model
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        self.tokenizer.padding_side = "left"  # generation continues at the right edge
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.model = AutoModelForCausalLM.from_pretrained(
            path, dtype=resolve_dtype(dtype, self.device), trust_remote_code=trust_remote_code
        ).to(self.device).eval()
        self.constraint = SchemaConstraint(self.tokenizer, sorted(_eos_ids(self.model, self.tokenizer)))

    @property
    def identity(self) -> str:
        """What the outputs depend on (a resumed run must use the same model)."""
        return f"local:{self.model_name}"

    def render(self, messages: list[dict]) -> str:
        """The prompt text: the tokenizer's chat template, or plain ``role: content`` lines
        for tokenizers without one (random test models)."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join(lines) + "\nassistant:"

    def chat(self, requests: list[ChatRequest]) -> list[ChatReply]:
        replies: list[ChatReply | None] = [None] * len(requests)
        prompts = [self.render(r.messages) for r in requests]
        lengths = [len(self.tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]

        def settings(i):
            r = requests[i]
            schema = json.dumps(r.json_schema, sort_keys=True) if r.json_schema else ""
            return (r.temperature, r.top_p, r.max_tokens, schema)

        by_settings = sorted(range(len(requests)), key=lambda i: (settings(i), lengths[i]))
        for key, group in itertools.groupby(by_settings, key=settings):
            group = list(group)
            for start in range(0, len(group), self.batch_size):
                batch = group[start:start + self.batch_size]
                for i, reply in zip(batch, self._generate([prompts[i] for i in batch], *key)):
                    replies[i] = reply
                    self.stats.add_reply(reply)
        return replies

    @torch.no_grad()
    def _generate(self, prompts: list[str], temperature: float, top_p: float, max_tokens: int,
                  schema: str) -> list[ChatReply]:
        from transformers import StoppingCriteriaList

        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False,
                                 return_token_type_ids=False).to(self.device)
        prompt_len = encoded.input_ids.shape[1]
        sampling = temperature > 0
        stopping = StoppingCriteriaList([_JsonObjectEnd(self.tokenizer, prompt_len)]) if self.stop_at_json else None
        if sampling:
            torch.manual_seed(self.seed)
        self.stats.note_in_flight(len(prompts))
        output = self.model.generate(
            **encoded, max_new_tokens=max_tokens, do_sample=sampling,
            temperature=temperature if sampling else None, top_p=top_p if sampling else None,
            top_k=None, pad_token_id=self.tokenizer.pad_token_id, stopping_criteria=stopping,
            prefix_allowed_tokens_fn=self.constraint.allowed_tokens_fn(json.loads(schema)) if schema else None,
        )
        new_tokens = output[:, prompt_len:]
        replies = []
        eos = _eos_ids(self.model, self.tokenizer)
        for row, ids in enumerate(new_tokens.tolist()):
            ended = next((k for k, t in enumerate(ids) if t in eos or t == self.tokenizer.pad_token_id), None)
            ids = ids if ended is None else ids[:ended]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if self.stop_at_json:
                text = text[:json_object_end(text) or len(text)]
            finish = "stop" if ended is not None or len(ids) < max_tokens else "length"
            replies.append(ChatReply(text=text.strip(), prompt_tokens=int(encoded.attention_mask[row].sum()),
                                     completion_tokens=len(ids), finish_reason=finish))
        return replies


def _eos_ids(model, tokenizer) -> set[int]:
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


class _JsonObjectEnd:
    """Stopping criterion: per sequence, True once a complete JSON object was generated."""

    def __init__(self, tokenizer, prompt_len: int):
        self.tokenizer, self.prompt_len = tokenizer, prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        done = [json_object_end(t) is not None for t in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
