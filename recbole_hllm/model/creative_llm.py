"""Creative LLM: a causal LM that writes a title conditioned on the user embedding.

The prompt template (yaml, not code) holds one ``{user}`` slot and named ad slots
(``{title}``, ``{description}``, ...). The text before and after ``{user}`` is tokenised
once per row; the user condition (:mod:`recbole_hllm.model.user_conditioning`) enters as
a soft token spliced between them (one ``inputs_embeds`` row) and/or as a per-layer
key/value prefix, followed by the target tokens when training. The loss is
cross-entropy on the target tokens only, and the LM head runs only at the positions
that predict them (the 49k-word vocabulary would otherwise dominate CPU time).
"""
from __future__ import annotations

import re
import string
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LogitsProcessorList

from recbole_hllm.backbones.backbone import (
    BackboneSpec,
    base_model,
    compute_precision,
    forward_takes,
    hidden_size,
    load_backbone,
    resolve_dtype,
    resolve_generation_dtype,
)
from recbole_hllm.backbones.greedy import greedy_decode
from recbole_hllm.backbones.guidance import PairedGuidance
from recbole_hllm.backbones.lora_merge import merged_lora
from recbole_hllm.backbones.prefix_cache import (
    KVGeometry,
    allow_checkpointing_with_read_only_cache,
    generation_cache,
    training_cache,
)
from recbole_hllm.data.token_rows import TokenRows, as_token_rows
from recbole_hllm.distributed.fsdp import shard_decoder_layers
from recbole_hllm.errors import UserError
from recbole_hllm.model.losses import LossSum
from recbole_hllm.model.user_conditioning import UserCondition

USER_SLOT = "user"


class TemplateError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt with exactly one ``{user}`` slot; other slots are filled with text."""

    text: str
    name: str

    def __post_init__(self):
        slots = [f for _, f, _, _ in string.Formatter().parse(self.text) if f is not None]
        if slots.count(USER_SLOT) != 1:
            raise TemplateError(f"{self.name} must contain the user slot {{{USER_SLOT}}} exactly once "
                                f"(it marks where the user embedding goes); got {self.text!r}")

    @property
    def text_slots(self) -> list[str]:
        return [f for _, f, _, _ in string.Formatter().parse(self.text) if f and f != USER_SLOT]

    def split(self, **values) -> tuple[str, str]:
        """Text before and after the user slot, with the other slots filled."""
        before, after = self.text.split("{" + USER_SLOT + "}")
        return before.format(**values), after.format(**values)


class CreativeLLM(nn.Module):
    def __init__(self, config, device: torch.device):
        super().__init__()
        self.spec = BackboneSpec.from_config(config, "creative")
        self.dtype = resolve_dtype(self.spec.dtype, device)
        self.generation_dtype = resolve_generation_dtype(config["generation_dtype"], self.dtype, device)
        self.llm, self.tokenizer = load_backbone(self.spec, device, causal_lm=True)
        # training runs in creative_llm_attention's kernel, generation in generation_attention's (null: as loaded)
        self.generation_attention = config["generation_attention"] or attention_of(self.llm)
        set_attention(self.llm, config["creative_llm_attention"])
        checkpointing = config["creative_llm_activation_checkpointing"] or 0
        enable_activation_checkpointing(self.llm, checkpointing)
        if checkpointing and config["user_injection"] in ("prefix", "both"):
            allow_checkpointing_with_read_only_cache(self.llm)  # the training prefix cache never grows
        self._base()[1].register_forward_pre_hook(_contiguous_input)  # see _contiguous_input
        self.kv_geometry = KVGeometry.of(self.llm.config)  # what a per-layer user prefix must fill
        self.tuned_layers = config["creative_tuned_layers"]
        if self.tuned_layers:
            freeze_layers_below(self.llm, self.kv_geometry.layers - self.tuned_layers)
        self.fsdp = bool(config["creative_llm_fsdp"])  # decoder layers sharded over the ranks (distributed/fsdp.py)
        if self.fsdp:
            shard_decoder_layers(self.llm, device, self.dtype)
        self.hidden_size = hidden_size(self.llm)
        self.max_target_len = config["creative_max_target_len"]
        self.max_context = getattr(self.llm.config, "max_position_embeddings", None)
        self.share_prefix = bool(config["generation_share_prefix"])  # encode the fixed prompt start once
        # greedy decoding drops ended rows (backbones/greedy.py); a checkpoint saved before the key has it on
        self.drop_finished_rows = config["generation_drop_finished_rows"] is not False
        # decode with LoRA folded into the weights (restored exactly after); sharded layers are left alone
        self.merge_lora = bool(config["generation_merge_lora"]) and not self.fsdp
        self.cache_kwarg = _cache_kwarg(self.llm)
        # ends every target; tokenizers of encoder models (BERT's) only have [SEP]
        self.eos_id = self.tokenizer.eos_token_id
        if self.eos_id is None:
            self.eos_id = self.tokenizer.sep_token_id
        if self.eos_id is None:
            raise ValueError(f"creative_llm {self.spec.source!r}: its tokenizer has neither an EOS nor a SEP token")

    # -- helpers --------------------------------------------------------------------
    def _encode(self, ids: list[int]):
        """The model's KV cache of one row of token ``ids``."""
        tensor = torch.tensor([ids], device=self.llm.get_input_embeddings().weight.device)
        return getattr(self.llm(input_ids=tensor, use_cache=True), self.cache_kwarg)

    def _shared_prompt_cache(self, prompt_ids: list[int], batch_size: int):
        """KV cache of the prompt start ``prompt_ids``, computed once and repeated for ``batch_size`` rows."""
        cache = self._encode(prompt_ids)
        cache.batch_repeat_interleave(batch_size)
        return cache


    @torch.no_grad()
    def text_kv(self, text: str, tokens: int) -> torch.Tensor:
        """The model's keys and values of ``text`` cut or cycled to ``tokens`` tokens, at
        positions 0..tokens-1: ``[layers, 2, kv_heads, tokens, head_dim]`` (float32). A user
        prefix starting here reads to the model like those tokens at the prompt's start."""
        ids = self.token_ids([text])[0] or [self.eos_id]
        with compute_precision(self.llm.device, self.dtype):
            cache = self._encode((ids * tokens)[:tokens])
        return torch.stack([torch.stack([layer.keys[0], layer.values[0]]) for layer in cache.layers]).float()

    def mean_token_norm(self) -> float:
        """Mean L2 norm of the word embeddings: the scale a soft token should start at."""
        with torch.no_grad():
            return float(self.llm.get_input_embeddings().weight.float().norm(dim=-1).mean())

    def _base(self):
        """(decoder body, lm head) of the wrapped model, through peft if present."""
        model = base_model(self.llm)
        return model.get_decoder(), model.get_output_embeddings()

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []

    def target_ids(self, texts: list[str]) -> list[list[int]]:
        eos = self.eos_id
        ids = self.tokenizer(texts, add_special_tokens=False, truncation=True,
                             max_length=self.max_target_len)["input_ids"]
        return [row + [eos] for row in ids]

    def _embed_rows(self, before_ids, soft_tokens, after_ids, target_ids, left_pad: bool, shared_len: int = 0):
        """Assemble ``[B, T, H]`` embeddings, mask and label positions for a batch.

        Row layout: before-tokens, soft token (if any), after-tokens, target tokens; the
        token parts are :class:`TokenRows` (or lists of ids). Built with tensor ops, no
        per-row loop: each position's token is gathered from the part it falls in.
        ``shared_len``: tokens of a shared prefix that precede these rows (context check).
        """
        embed = self.llm.get_input_embeddings()
        device = embed.weight.device
        before, after, targets = (as_token_rows(part, device) for part in (before_ids, after_ids, target_ids))
        has_soft = soft_tokens is not None
        after_start = before.lengths + int(has_soft)  # [B]
        target_start = after_start + after.lengths
        row_len = target_start + targets.lengths
        width = int(row_len.max()) if len(row_len) else 0
        if self.max_context and width + shared_len > self.max_context:
            raise ValueError(f"creative prompt + target is {width + shared_len} tokens, more than the creative LLM's "
                             f"context ({self.max_context}); shorten creative_prompt or the ad text fields")
        pad = (width - row_len) if left_pad else torch.zeros_like(row_len)
        pos = torch.arange(width, device=device)[None] - pad[:, None]  # [B, W] position within the row
        in_row = (pos >= 0) & (pos < row_len[:, None])
        ids = torch.where(pos < before.lengths[:, None], _gather_from(before, pos),
                          torch.where(pos < target_start[:, None], _gather_from(after, pos - after_start[:, None]),
                                      _gather_from(targets, pos - target_start[:, None])))
        is_soft = (pos == before.lengths[:, None]) & has_soft
        is_target = in_row & (pos >= target_start[:, None])
        ids = torch.where(in_row & ~is_soft, ids, 0)
        embeds = embed(ids)  # [B, W, H]
        if has_soft:
            embeds = torch.where(is_soft[..., None], soft_tokens[:, None].to(embeds.dtype), embeds)
        embeds = torch.where(in_row[..., None], embeds, embeds.new_zeros(()))
        labels = torch.where(is_target, ids, -100)
        return embeds.to(self.dtype), in_row.long(), labels

    # -- training -------------------------------------------------------------------
    def token_loss(self, before_ids, condition: UserCondition | None, after_ids, target_ids,
                   target_weights=None) -> LossSum:
        """Token cross-entropy of ``target_ids`` given the prompt and the user condition,
        summed over the target tokens (the caller takes the mean, see :mod:`~recbole_hllm.model.losses`).

        ``condition`` carries the soft token (spliced at the user slot) and/or the
        per-layer prefix (a read-only KV cache the real tokens attend to); None: no U.
        ``target_weights`` (one list per row, one weight per target token, or a right-padded
        ``[B, W]`` tensor) weights each token (the count is then the weights' sum). With a sharded (FSDP) creative LLM
        every rank must run its layers at each step, so a batch with no rows still runs
        one idle forward."""
        if len(target_ids) == 0:
            return LossSum(self._idle_forward() if self.fsdp else torch.zeros((), device=self.llm.device), 0)
        logits, labels = self.target_logits(before_ids, condition, after_ids, target_ids)
        token_nll = F.cross_entropy(logits, labels, reduction="none")  # row-major, as target_ids
        if target_weights is None:
            return LossSum(token_nll.sum(), len(token_nll))
        weights = _flat_weights(target_weights, target_ids, token_nll.device)
        return LossSum((token_nll * weights).sum(), weights.sum())

    def loss(self, before_ids, condition: UserCondition | None, after_ids, target_ids,
             target_weights=None) -> torch.Tensor:
        """:meth:`token_loss` as this process's mean (tests, benchmarks; the models reduce
        over every process in ``calculate_loss``)."""
        return self.token_loss(before_ids, condition, after_ids, target_ids, target_weights).mean()

    def target_logits(self, before_ids, condition: UserCondition | None, after_ids,
                      target_ids) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced ``[n_targets, vocab]`` logits at the positions that predict the
        target tokens, and those tokens ``[n_targets]`` (rows in order). The LM head runs
        only there: the 49k-word vocabulary would otherwise dominate CPU time."""
        soft_tokens, prefix_len = _soft_tokens(condition), _prefix_len(condition)
        embeds, mask, labels = self._embed_rows(before_ids, soft_tokens, after_ids, target_ids, left_pad=False,
                                                shared_len=prefix_len)
        extra = {}
        if prefix_len:
            mask = torch.cat([mask.new_ones(len(mask), prefix_len), mask], dim=1)
            extra[self.cache_kwarg] = training_cache(condition.prefix.to(self.dtype))
        decoder, lm_head = self._base()
        predicts = labels[:, 1:] != -100  # position t predicts token t+1
        with compute_precision(embeds.device, self.dtype):
            hidden = decoder(inputs_embeds=embeds, attention_mask=mask, use_cache=False, **extra).last_hidden_state
            logits = lm_head(hidden[:, :-1][predicts])
        return logits.float(), labels[:, 1:][predicts]

    def _idle_forward(self) -> torch.Tensor:
        """A zero that went through every sharded layer: with FSDP all ranks must run each
        forward and backward together, even a rank whose batch has nothing to learn."""
        decoder, _ = self._base()
        embeds = self.llm.get_input_embeddings().weight[:1][None]  # [1, 1, H]
        with compute_precision(embeds.device, self.dtype):
            hidden = decoder(inputs_embeds=embeds.to(self.dtype), use_cache=False).last_hidden_state
        return hidden.float().sum() * 0

    # -- generation -----------------------------------------------------------------
    @torch.no_grad()
    def generate(self, before_ids, condition: UserCondition | None, after_ids, max_new_tokens: int,
                 **decoding) -> tuple[list[str], int]:
        """Batched generation -> (clean texts, new tokens); see :meth:`generate_ids`."""
        output = self.generate_ids(before_ids, condition, after_ids, max_new_tokens, **decoding)
        texts = self.tokenizer.batch_decode(output, skip_special_tokens=True)
        new_tokens = int((output != self.tokenizer.pad_token_id).sum())
        return [clean_generation(t) for t in texts], new_tokens

    def merged_for_generation(self):
        """Context: the LoRA deltas merged while it lasts (``generation_merge_lora``); wrap a
        whole pass of batches in it, since each merge costs seconds."""
        return merged_lora(self.llm, self.merge_lora)

    @torch.no_grad()
    def generate_ids(self, before_ids, condition: UserCondition | None, after_ids, max_new_tokens: int,
                     **decoding) -> torch.Tensor:
        """:meth:`_generate_ids` at ``generation_dtype`` (see :meth:`_generation_precision`), with
        the LoRA deltas merged while it runs (``generation_merge_lora``, :mod:`~recbole_hllm.backbones.lora_merge`)."""
        with self._generation_precision(), attention_kernel(self.llm, self.generation_attention), \
                self.merged_for_generation():
            return self._generate_ids(before_ids, condition, after_ids, max_new_tokens, **decoding)

    def _generate_ids(self, before_ids, condition: UserCondition | None, after_ids, max_new_tokens: int,
                      do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                      top_k: int = 50, user_guidance: float = 0.0,
                      contrast: UserCondition | None = None) -> torch.Tensor:
        """Batched generation from ``inputs_embeds`` (left-padded, KV cache) -> new token ids ``[B, T]``
        (padded with the pad id after a row's EOS).

        With a user prefix, the cache starts with each row's P prefix states (and the
        mask with P ones); ``generate`` skips the P placeholder embeddings in front, as
        it skips any cached position. Without one, when every row starts with the same
        text before the user slot (the template's fixed instruction, the usual case),
        that text is encoded once and its KV cache shared by the batch: rows are laid
        out ``[shared text | padding | soft token, ad]`` and the attention mask skips the
        padding, so positions match the unshared run. That sharing cannot hold with a
        user prefix: the instruction's own keys and values then depend on the user,
        because its tokens attend to the prefix.

        ``user_guidance`` > 0 (with a ``contrast`` condition, one row per row): decode with
        guidance on the user condition (:mod:`recbole_hllm.backbones.guidance`); the batch
        is doubled, so it costs a second forward per token."""
        if user_guidance:
            return self._guided_ids(before_ids, condition, after_ids, max_new_tokens, do_sample, user_guidance,
                                    contrast)
        return self._decode(before_ids, condition, after_ids, max_new_tokens, do_sample,
                            dict(temperature=temperature, top_p=top_p, top_k=top_k) if do_sample else {})

    def _guided_ids(self, before_ids, condition, after_ids, max_new_tokens, do_sample, scale, contrast):
        """Greedy ids ``[B, T]`` decoded from rows ``[own | contrast]`` with :class:`PairedGuidance`."""
        if do_sample:
            raise ValueError("generation_user_guidance > 0 decodes greedily (generation_do_sample: False): "
                             "sampled rows and their contrast rows would drift apart")
        if condition is None or contrast is None:
            raise ValueError("generation_user_guidance > 0 needs the user's condition and a contrast condition")
        return self._decode(list(before_ids) * 2, UserCondition.cat(condition, contrast), list(after_ids) * 2,
                            max_new_tokens, False, {}, guidance=scale)

    def _decode(self, before_ids, condition: UserCondition | None, after_ids, max_new_tokens: int,
                do_sample: bool, extra: dict, guidance: float = 0.0) -> torch.Tensor:
        """One decoding call over the batch (see :meth:`_generate_ids`) -> new ids ``[B, T]``
        (``B`` halved with ``guidance``: rows ``[own | contrast]`` in, own rows out).

        Greedy decoding drops each row from the batch when it ends
        (:func:`~recbole_hllm.backbones.greedy.greedy_decode`, ``generation_drop_finished_rows``);
        sampling, and a sharded model whose ranks must decode in step, use ``generate``
        (``extra``: its sampling settings)."""
        empty = [[] for _ in before_ids]
        soft_tokens, prefix_len = _soft_tokens(condition), _prefix_len(condition)
        shared = before_ids[0] if before_ids and all(b == before_ids[0] for b in before_ids) else []
        if prefix_len:
            embeds, mask, _ = self._embed_rows(before_ids, soft_tokens, after_ids, empty, left_pad=True,
                                               shared_len=prefix_len)
            cache = generation_cache(condition.prefix.to(self.dtype))
            embeds = torch.cat([embeds.new_zeros(len(embeds), prefix_len, embeds.shape[-1]), embeds], dim=1)
            mask = torch.cat([mask.new_ones(len(mask), prefix_len), mask], dim=1)
        elif shared and self.share_prefix:
            embeds, mask, _ = self._embed_rows(empty, soft_tokens, after_ids, empty, left_pad=True,
                                               shared_len=len(shared))
            cache = self._shared_prompt_cache(shared, len(before_ids))
            shared_embeds = self.llm.get_input_embeddings()(torch.tensor(shared, device=embeds.device))
            embeds = torch.cat([shared_embeds.to(embeds.dtype).expand(len(before_ids), -1, -1), embeds], dim=1)
            mask = torch.cat([mask.new_ones(len(before_ids), len(shared)), mask], dim=1)
        else:
            cache = None
            embeds, mask, _ = self._embed_rows(before_ids, soft_tokens, after_ids, empty, left_pad=True)
        if self.max_context and embeds.shape[1] + max_new_tokens > self.max_context:
            max_new_tokens = self.max_context - embeds.shape[1]
            if max_new_tokens <= 0:
                raise ValueError(f"the creative prompt alone ({embeds.shape[1]} tokens) fills the creative "
                                 f"LLM's context ({self.max_context}); shorten it")
        if not do_sample and self.drop_finished_rows and not self.fsdp:
            return greedy_decode(self.llm, embeds, mask, cache, max_new_tokens, self.eos_id,
                                 self.tokenizer.pad_token_id, self.cache_kwarg, guidance)
        if guidance:
            extra = {**extra, "logits_processor": LogitsProcessorList([PairedGuidance(guidance, len(embeds) // 2)])}
        ids = self.llm.generate(
            inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=do_sample,
            pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.eos_id,
            use_cache=True, **({self.cache_kwarg: cache} if cache is not None else {}), **extra,
            **({"synced_gpus": True} if self.fsdp else {}),  # sharded layers: ranks decode in step
        )
        return ids[: len(embeds) // 2] if guidance else ids

    def _generation_precision(self):
        """Autocast to ``generation_dtype``: on a CPU with native bf16 generation
        (compute-bound: the prompts' prefill) runs about twice as fast, whatever training
        computes in (``creative_llm_dtype``); trainable weights are float32 whatever the compute dtype. The
        cache and the prefix stay in the compute dtype."""
        return compute_precision(self.llm.device, self.generation_dtype)


def _gather_from(rows: TokenRows, pos: torch.Tensor) -> torch.Tensor:
    """``rows.ids[b, pos[b, t]]`` where ``pos`` is inside the row's width, else 0: ``[B, W]``."""
    if rows.ids.shape[1] == 0:
        return torch.zeros_like(pos)
    return rows.ids.gather(1, pos.clamp(0, rows.ids.shape[1] - 1))


def _contiguous_input(module, args):
    """Forward pre-hook of the LM head: hand it a contiguous input.

    Why: ``generate`` runs the head on ``hidden[:, -1:]`` after the prompt, a strided view
    ``[B, 1, H]``. With bf16 weights and a bf16 input (``creative_llm_dtype`` bf16 or
    ``native``), torch's CPU matmul cannot fold that view into one matrix product and
    falls back to a batched product over a copy of the weight per row: ``B`` copies of the
    49k x 576 vocabulary table (3.6 GB and 9 s for a batch of 64 on 2 cores). Under float32
    weights and bf16 autocast the cast happened to make the input contiguous."""
    hidden = args[0]
    return None if hidden.is_contiguous() else (hidden.contiguous(), *args[1:])


def _flat_weights(target_weights, target_ids, device) -> torch.Tensor:
    """Per-token weights ``[n_targets]`` in the row-major order of the target tokens:
    from one list per row, or from a right-padded ``[B, W]`` tensor cut to each row's length."""
    if not isinstance(target_weights, torch.Tensor):
        return torch.tensor([w for row in target_weights for w in row], device=device)
    lengths = as_token_rows(target_ids, device).lengths
    in_row = torch.arange(target_weights.shape[1], device=device)[None] < lengths[:, None]
    return target_weights.to(device)[in_row]


def _soft_tokens(condition: UserCondition | None):
    return None if condition is None else condition.soft_tokens


def _prefix_len(condition: UserCondition | None) -> int:
    return 0 if condition is None else condition.prefix_len


def _cache_kwarg(model) -> str:
    """The KV-cache argument's name: ``cache`` in transformers 5's models, ``past_key_values`` before."""
    return "cache" if forward_takes(model, "cache") else "past_key_values"


def attention_of(model) -> str:
    """The attention kernel the model runs now (``sdpa``, ``eager``, ...)."""
    return base_model(model).config._attn_implementation


def set_attention(model, implementation: str | None) -> None:
    """Switch the attention kernel (``creative_llm_attention``; null keeps the model's own).

    Why: on a CPU, torch's flash-attention backward is slow on the creative LLM's short
    rows (0.26 s of a 1.42 s joint step on 2 cores); transformers' eager attention made a
    step 12-16% faster there, with slightly different numbers (docs/benchmarks.md)."""
    if implementation and implementation != attention_of(model):
        base_model(model).set_attn_implementation(implementation)


@contextmanager
def attention_kernel(model, implementation: str | None):
    """Context: the model runs ``implementation``'s attention kernel, then its own again.

    Why: the kernel that trains fastest is not the one that decodes fastest. On 2 CPU
    cores eager attention made the joint step 12-16% faster, but generation (a batch of
    256 rows with a growing KV cache) slower than sdpa (``generation_attention``)."""
    before = attention_of(model)
    set_attention(model, implementation)
    try:
        yield
    finally:
        set_attention(model, before)


def freeze_layers_below(model, first_tuned: int) -> int:
    """Stop training the decoder layers below ``first_tuned`` (their LoRA adapters or
    weights): with nothing to train there and a constant user prefix in them, the
    backward pass ends at layer ``first_tuned``. Returns how many tensors were frozen."""
    frozen = 0
    for name, param in model.named_parameters():
        match = _LAYER_INDEX.search(name)
        if match and int(match.group(1)) < first_tuned and param.requires_grad:
            param.requires_grad_(False)
            frozen += 1
    return frozen


_LAYER_INDEX = re.compile(r"\.layers\.(\d+)\.")


def enable_activation_checkpointing(model, every_n_layers: int) -> None:
    """Recompute the activations of every n-th layer in the backward pass instead of
    keeping them (0: off). Why: a full-depth creative LLM otherwise holds GBs of
    activations per training step; the price is about one more forward of those layers."""
    if not every_n_layers:
        return
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs, every_n_layers=every_n_layers)
    elif every_n_layers == 1:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    else:
        raise ValueError("creative_llm_activation_checkpointing > 1 needs transformers >= 5; use 1 or 0")


def clean_generation(text: str) -> str:
    """First line of the generation, without a repeated prompt label or quotes."""
    line = text.strip().split("\n", 1)[0].strip()
    line = re.sub(r"^(new title|title)\s*:\s*", "", line, flags=re.IGNORECASE)
    return line.strip().strip('"').strip()
