"""Greedy decoding in which a finished row leaves the batch.

Why: ``generate`` keeps every row of a batch in every forward until the last row ends.
Personalised titles are short (12 tokens on average on ads-synth) but one row in a
batch of 256 that never emits EOS keeps all 256 decoding to ``max_new_tokens`` (32):
on 2 CPU cores 55% of the decoded tokens of the default test pass were such padding,
and decoding was three quarters of generation. Here a row whose token is EOS is
dropped from the batch, its KV cache rows included (``Cache.batch_select_indices``),
so each forward computes only the rows still writing.

What stays the same as ``generate``'s greedy search: positions from the attention mask
(left padding, a pre-filled cache counted as the first positions), the argmax over the
float32 scores of the last position, EOS ending a row, the output laid out as the new
tokens ``[B, T]`` padded with ``pad_id`` after each row's EOS. A batch with fewer rows
may round its matrix products differently, so a token can differ from ``generate``'s
where two candidates tie to the last bit (tests compare the two in float32).

Guidance on U (:mod:`recbole_hllm.backbones.guidance`) decodes rows ``[own | contrast]``;
here a row and its contrast row leave together, when the guided token is EOS.
"""
from __future__ import annotations

import torch

from recbole_hllm.backbones.backbone import forward_takes
from recbole_hllm.backbones.guidance import guided_scores


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids ``[B, L]`` of a left-padded attention mask ``[B, L]``: each row counts its
    own tokens from 0 (padding gets 0), as ``generate`` derives them."""
    positions = mask.long().cumsum(-1) - 1
    return positions.masked_fill(mask == 0, 0)


@torch.no_grad()
def greedy_decode(llm, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, cache, max_new_tokens: int,
                  eos_id: int, pad_id: int, cache_kwarg: str = "cache", guidance: float = 0.0) -> torch.Tensor:
    """New token ids ``[B, T]`` (``T`` <= ``max_new_tokens``) greedily decoded from ``inputs_embeds``
    ``[B, L, H]`` with ``attention_mask`` ``[B, L]``; the first ``cache.get_seq_length()``
    positions are already in ``cache`` (their embeddings are skipped), as in ``generate``.

    ``guidance`` > 0: the batch is rows ``[own (B/2) | contrast (B/2)]`` and each pair
    decodes the token of :func:`~recbole_hllm.backbones.guidance.guided_scores`; the
    result holds the B/2 own rows."""
    from transformers.cache_utils import DynamicCache

    paired = guidance > 0
    rows = inputs_embeds.shape[0] // 2 if paired else inputs_embeds.shape[0]
    cache = cache if cache is not None else DynamicCache(config=llm.config)
    past = cache.get_seq_length()
    positions = positions_from_mask(attention_mask)
    last_only = {"logits_to_keep": 1} if forward_takes(llm, "logits_to_keep") else {}  # the prompt's other logits: unused
    logits = llm(inputs_embeds=inputs_embeds[:, past:], attention_mask=attention_mask,
                 position_ids=positions[:, past:], use_cache=True, **last_only,
                 **{cache_kwarg: cache}).logits[:, -1]
    new_ids = torch.full((rows, max_new_tokens), pad_id, dtype=torch.long, device=inputs_embeds.device)
    writing = torch.arange(rows, device=inputs_embeds.device)  # output row of each pair still in the batch
    next_position = positions[:, -1]
    steps = 0
    for step in range(max_new_tokens):
        scores = logits.float()
        token = (guided_scores(scores, guidance) if paired else scores).argmax(dim=-1)  # [rows still writing]
        new_ids[writing, step] = token
        steps = step + 1
        ended = token == eos_id
        if steps == max_new_tokens or bool(ended.all()):
            break
        if bool(ended.any()):
            keep = torch.nonzero(~ended).flatten()
            batch_keep = torch.cat([keep, keep + len(ended)]) if paired else keep
            cache.batch_select_indices(batch_keep)
            attention_mask, next_position = attention_mask[batch_keep], next_position[batch_keep]
            writing, token = writing[keep], token[keep]
        next_position = next_position + 1
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(attention_mask), 1)], dim=1)
        input_ids = torch.cat([token, token]) if paired else token
        logits = llm(input_ids=input_ids[:, None], attention_mask=attention_mask,
                     position_ids=next_position[:, None], use_cache=True, **{cache_kwarg: cache}).logits[:, -1]
    return new_ids[:, :steps]
