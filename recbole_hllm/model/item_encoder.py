"""Item LLM: turns each item's text into one embedding.

The item text (prompt + ``field: value`` parts, truncated to ``item_text_max_len``
tokens) is fed to the item LLM with one learnable [ITEM] embedding appended after the
last text token; the item embedding is the last hidden state at [ITEM]
(``item_pooling: item_token``, as in HLLM) or the mean over the text
(``item_pooling: mean``, the natural choice for a frozen sentence encoder such as MiniLM).

A frozen item LLM always yields the same table, so it is computed once (unique
items, length-sorted batches, no grad) and cached on disk keyed by model, texts and
settings; the LLM itself is then only loaded when the cache misses, and its weights
never enter RecBole checkpoints.

A trained item LLM can train its top ``item_llm_trained_layers`` layers only: the
hidden states that enter them are the same at every step (the layers below are
frozen), so they are computed once for every item and kept (``item_lower_cache``),
and a step runs the top layers alone; the [ITEM] token then enters at the first
trained layer. Each step encodes every item it needs once, in length-sorted chunks
(little padding), optionally with activation checkpointing per chunk.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
from logging import getLogger

import torch
from torch import nn
from tqdm.auto import tqdm

from recbole_hllm.backbones.backbone import (BackboneSpec, apply_tuning, compute_precision, describe_precision,
                                       load_backbone, load_tokenizer, resolve_dtype, store_mixed_precision)
from recbole_hllm.backbones.embedded import cache_root
from recbole_hllm.backbones.layer_split import keep_bottom_layers, keep_top_layers, layer_inputs
from recbole_hllm.distributed.context import gather_objects, rank, sum_across_ranks, world_size


class _Hidden:
    """Holds a module without registering it, so it stays out of state_dict and the
    optimizer; :meth:`ItemEncoder._apply` still moves it with ``.to()``."""

    def __init__(self, module):
        self.module = module


class ItemEncoder(nn.Module):
    def __init__(self, config, item_texts: list[str], device: torch.device):
        super().__init__()
        self.spec = BackboneSpec.from_config(config, "item")
        self.pooling = config["item_pooling"]
        self.batch_size = config["item_embed_batch_size"]
        self.use_disk_cache = config["item_embedding_cache"]
        self.show_progress = bool(config["show_progress"])
        self.frozen = self.spec.tuning == "frozen"
        self.dtype = resolve_dtype(self.spec.dtype, device)
        self.tokenizer = load_tokenizer(self.spec)
        self.item_texts = item_texts
        token_ids_per_item = _tokenize(self.tokenizer, item_texts, config["item_prompt"] or "",
                                       config["item_text_max_len"])
        self.register_buffer("text_tokens", _pad(token_ids_per_item, self.tokenizer.pad_token_id).to(device),
                             persistent=False)  # [n_items, W]
        self.register_buffer("text_lengths", torch.tensor([len(t) for t in token_ids_per_item], device=device),
                             persistent=False)  # [n_items]
        self.hidden_size = _config_hidden_size(self.spec)
        generator = torch.Generator().manual_seed(int(config["seed"] or 0))
        self.item_token = nn.Parameter((torch.randn(self.hidden_size, generator=generator) * 0.02).to(device),
                                       requires_grad=not self.frozen)
        self._llm = None  # _Hidden (frozen) or registered module (trainable)
        self.register_buffer("_frozen_table", None, persistent=False)  # [n_items, hidden], frozen LLM only
        self.items_embedded = 0  # item texts this process ran through the LLM for whole tables
        self.items_encoded = 0  # item texts this process ran through the LLM in all
        self.trained_layers = config["item_llm_trained_layers"]
        self.checkpointing = bool(config["item_llm_checkpointing"])
        self.register_buffer("lower_states", None, persistent=False)  # [n_items, W, hidden]: into the trained layers
        self._lower = None  # _Hidden: the frozen lower layers below the trained ones (item_llm_trained_layers)
        if self.frozen:
            return
        if self.trained_layers:
            self.llm = self._load_top_layers(bool(config["item_lower_cache"]))
        else:
            self.llm = self._load_llm()

    @property
    def device(self) -> torch.device:
        return self.text_tokens.device

    def _apply(self, fn, *args, **kwargs):
        """``.to()``, ``.cuda()``, ...: the unregistered frozen LLMs move with the rest."""
        for hidden in (self._llm, self._lower):
            if hidden is not None:
                hidden.module._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    # -- backbone -------------------------------------------------------------------
    def _load_llm(self):
        model, _ = load_backbone(self.spec, self.device)
        if self.frozen:
            model.eval()
            self._llm = _Hidden(model)
        return model

    def _load_top_layers(self, keep_states: bool):
        """The item LLM's top ``trained_layers`` layers, tuned as configured. The frozen
        layers below are kept aside (unregistered: never trained or checkpointed); with
        ``keep_states`` they run once, on first use, for every item (and later only for
        other texts, e.g. user profiles), else without gradients at every step."""
        whole, _ = load_backbone(dataclasses.replace(self.spec, tuning="frozen"), self.device)
        whole.eval()
        total = whole.config.num_hidden_layers
        if self.trained_layers > total:
            raise ValueError(f"item_llm_trained_layers = {self.trained_layers}: the item LLM has {total} layers")
        self.first_trained = total - self.trained_layers
        self.keep_states = keep_states
        self._lower = _Hidden(keep_bottom_layers(copy.deepcopy(whole), self.first_trained + 1))
        top = keep_top_layers(whole, self.trained_layers).requires_grad_(True)
        top = store_mixed_precision(apply_tuning(top, self.spec), self.dtype)
        getLogger(__name__).info("item LLM: top %d of %d layers trained over %s lower-layer states; %s",
                                 self.trained_layers, total, "kept" if keep_states else "recomputed",
                                 describe_precision(top, self.device, self.spec))
        return top

    @torch.no_grad()
    def _lower_states_of_every_item(self) -> torch.Tensor:
        """``[n_items, W, hidden]`` (compute dtype): what enters the first trained layer, per text token."""
        n_items, width = self.text_tokens.shape
        states = None
        for ids in torch.arange(n_items, device=self.device).split(self.batch_size):
            batch = self._lower_states(self._lower.module, self.text_tokens[ids], self.text_lengths[ids])
            if states is None:
                states = torch.zeros(n_items, width, batch.shape[-1], dtype=batch.dtype, device=self.device)
            states[ids] = batch
        return states

    def _lower_states(self, model, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The frozen lower layers over the text ``tokens`` [N, W] alone -> ``[N, W, hidden]``."""
        mask = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths[:, None]
        with compute_precision(tokens.device, self.dtype):
            return layer_inputs(model, self.first_trained, input_ids=tokens, attention_mask=mask.long())

    def _backbone(self):
        if not self.frozen:
            return self.llm
        if self._llm is None:
            self._load_llm()
        return self._llm.module

    # -- embedding ----------------------------------------------------------------
    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Embeddings of ``item_ids`` (any shape) -> ``[*item_ids.shape, hidden]`` (float32)."""
        if self.frozen:
            return self.all_items()[item_ids]
        unique_ids, inverse = torch.unique(item_ids, return_inverse=True)
        return self._encode_in_chunks(unique_ids)[inverse]

    def _encode_in_chunks(self, item_ids: torch.Tensor) -> torch.Tensor:
        """:meth:`_encode` of ``item_ids`` [N] in length-sorted chunks of ``item_embed_batch_size``
        (each padded only to its own longest text), with activation checkpointing per chunk
        when ``item_llm_checkpointing`` -> ``[N, hidden]``."""
        if len(item_ids) <= self.batch_size:
            return self._encode(item_ids)
        order = torch.argsort(self.text_lengths[item_ids])
        chunks = []
        for part in item_ids[order].split(self.batch_size):
            if self.checkpointing and torch.is_grad_enabled():
                chunks.append(torch.utils.checkpoint.checkpoint(self._encode, part, use_reentrant=False))
            else:
                chunks.append(self._encode(part))
        out = torch.empty(len(item_ids), chunks[0].shape[-1], device=chunks[0].device, dtype=chunks[0].dtype)
        out[order] = torch.cat(chunks)
        return out

    def all_items(self) -> torch.Tensor:
        """``[n_items, hidden]`` table for every internal item id (row 0 = padding)."""
        if self.frozen:
            if self._frozen_table is None:
                self._frozen_table = self._load_or_compute_table().to(self.device)
            return self._frozen_table
        with torch.no_grad():
            return self._compute_table()

    def _load_or_compute_table(self) -> torch.Tensor:
        path = self._cache_path()
        # all ranks take the same branch (the computation below is a collective), even
        # where nodes do not share the cache folder
        if self.use_disk_cache and all(gather_objects(os.path.isfile(path))):
            getLogger(__name__).info("item embeddings loaded from cache %s", path)
            return torch.load(path, map_location="cpu", weights_only=True)
        with torch.no_grad():
            table = self._compute_table().cpu()
        if self.use_disk_cache and rank() == 0:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            torch.save(table, tmp)
            os.replace(tmp, path)
        return table

    def _compute_table(self) -> torch.Tensor:
        """Every item's embedding; in a multi-process run each rank embeds every
        world-th batch and the shards are summed (each item is embedded once in all)."""
        n_items = self.text_tokens.shape[0]
        table = torch.zeros(n_items, self.hidden_size, device=self.device)
        order = torch.argsort(self.text_lengths[1:], descending=True) + 1  # length buckets
        batches = order.split(self.batch_size)[rank()::world_size()]
        for ids in tqdm(batches, desc="item embeddings", unit="batch", disable=not self.show_progress):
            table[ids] = self._encode(ids.to(self.device))
        self.items_embedded += sum(len(ids) for ids in batches)
        return sum_across_ranks(table)

    def _encode(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Run the item LLM on the texts of ``item_ids`` [N] -> [N, hidden] float32."""
        self.items_encoded += len(item_ids)
        lengths = self.text_lengths[item_ids]  # [N]
        width = int(lengths.max()) if len(item_ids) else 0
        if self._lower is not None and self.keep_states and self.lower_states is None:
            self.lower_states = self._lower_states_of_every_item()
        if self.lower_states is not None:
            return self._encode_embeds(self.llm, self.lower_states[item_ids, :width], lengths)
        return self._encode_tokens(self.text_tokens[item_ids, :width], lengths)

    def embed_texts(self, texts: list[str], max_len: int | None = None) -> torch.Tensor:
        """Embed arbitrary texts (e.g. user profiles) like items: ``[len(texts), hidden]``, no grad."""
        ids = _tokenize(self.tokenizer, texts, "", max_len or 4 * self.text_tokens.shape[1])
        tokens = _pad(ids, self.tokenizer.pad_token_id).to(self.device)
        lengths = torch.tensor([len(t) for t in ids], device=self.device)
        out = torch.zeros(len(texts), self.hidden_size, device=self.device)
        with torch.no_grad():
            for batch in torch.arange(len(texts), device=self.device).split(self.batch_size):
                width = int(lengths[batch].max())
                out[batch] = self._encode_tokens(tokens[batch, :width], lengths[batch])
        return out

    def _encode_tokens(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Item LLM over right-padded ``tokens`` [N, W] with ``lengths`` [N] -> [N, hidden] float32:
        the whole LLM, or (``item_llm_trained_layers``) its frozen lower layers, then the trained top."""
        backbone = self._backbone()
        if self._lower is not None:
            inputs = self._lower_states(self._lower.module, tokens, lengths)
        else:
            inputs = backbone.get_input_embeddings()(tokens)
        return self._encode_embeds(backbone, inputs, lengths)

    def _encode_embeds(self, backbone, embeds: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``backbone`` over right-padded text inputs ``embeds`` [N, W, H] (word embeddings, or
        the hidden states entering its first layer) plus [ITEM] -> [N, hidden] float32."""
        width = embeds.shape[1] + 1
        embeds = torch.cat([embeds, embeds.new_zeros(len(embeds), 1, embeds.shape[-1])], dim=1)
        rows = torch.arange(len(embeds), device=embeds.device)
        embeds[rows, lengths] = self.item_token.to(embeds.dtype)  # [ITEM] right after the text
        positions = torch.arange(width, device=embeds.device)
        mask = (positions[None, :] <= lengths[:, None]).long()  # [N, width]
        with compute_precision(embeds.device, self.dtype):
            hidden = backbone(inputs_embeds=embeds.to(self.dtype), attention_mask=mask).last_hidden_state
        hidden = hidden.float()
        if self.pooling == "item_token":
            return hidden[rows, lengths]
        text_mask = (positions[None, :] < lengths[:, None]).float().unsqueeze(-1)
        return (hidden * text_mask).sum(1) / text_mask.sum(1).clamp(min=1)

    def _cache_path(self) -> str:
        digest = hashlib.sha256()
        for part in (self.spec.identity(), self.pooling, str(self.text_tokens.shape),
                     str(self.dtype), "\x1f".join(self.item_texts)):
            digest.update(part.encode())
        digest.update(self.text_tokens.cpu().numpy().tobytes())
        digest.update(self.item_token.detach().float().cpu().numpy().tobytes())
        return str(cache_root() / "item_embeddings" / f"{digest.hexdigest()[:32]}.pt")

    def train(self, mode: bool = True):
        super().train(mode)
        if self._llm is not None:
            self._llm.module.eval()  # a frozen LLM never uses dropout
        return self


def _tokenize(tokenizer, texts, prompt, max_len) -> list[list[int]]:
    """Token ids of ``prompt + text`` per item, text truncated to ``max_len`` tokens."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    text_ids = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_len)["input_ids"]
    bos = [tokenizer.bos_token_id] if getattr(tokenizer, "bos_token_id", None) is not None else []
    if tokenizer.cls_token_id is not None:  # BERT-style encoders expect [CLS] first
        bos = [tokenizer.cls_token_id]
    return [bos + prompt_ids + ids for ids in text_ids]


def _pad(sequences: list[list[int]], pad_id: int) -> torch.Tensor:
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out


def _config_hidden_size(spec: BackboneSpec) -> int:
    """Hidden size without loading weights (the LLM may never be needed)."""
    from transformers import AutoConfig

    if spec.source == "random":
        return int(spec.random_config["hidden_size"])
    from recbole_hllm.backbones.backbone import resolve_model_dir

    config = AutoConfig.from_pretrained(resolve_model_dir(spec.source, f"{spec.role}_llm"),
                                        trust_remote_code=spec.trust_remote_code)
    return int(getattr(config, "hidden_size", None) or config.d_model)
