"""Personalisation: how close a title is to what the user clicked (PENS' Pc).

Pc(avg) / Pc(max) = the mean / max similarity between the title and the texts of the
user's clicked items (the history before the target). Two similarities:

* ``pc_avg`` / ``pc_max``: cosine of sentence embeddings from the embedded
  all-MiniLM-L6-v2 (mean pooling, L2-normalised: the model's own recipe);
* ``pc_avg_tok`` / ``pc_max_tok``: token overlap, ROUGE-1 F1 (stemmed).

Scored beside the same numbers for the original title (``original_pc_avg``...), the
lift shows whether personalisation moved the title towards the user. Users without a
history are left out.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from recbole_hllm.evaluation.overlap import rouge_f1


@lru_cache(maxsize=1)
def _minilm():
    from transformers import AutoModel, AutoTokenizer

    from recbole_hllm.backbones.embedded import embedded_model_dir

    path = embedded_model_dir("minilm")
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def embed_texts(texts: list[str], batch_size: int = 128) -> np.ndarray:
    """``[len(texts), 384]`` unit-norm sentence embeddings (all-MiniLM-L6-v2)."""
    import torch

    tokenizer, model = _minilm()
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=128,
                              return_tensors="pt")
            hidden = model(**batch).last_hidden_state  # [B, T, 384]
            mask = batch["attention_mask"][..., None].float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)


def _with_history(records):
    return [r for r in records if r.history]


def _embedding_similarities(records) -> list[np.ndarray]:
    """Per record, the cosine of its title to each of its history texts."""
    texts = sorted({t for r in records for t in r.history} | {r.generated for r in records})
    index = {t: i for i, t in enumerate(texts)}
    vectors = embed_texts(texts)
    return [vectors[[index[t] for t in r.history]] @ vectors[index[r.generated]] for r in records]


def _token_similarities(records) -> list[np.ndarray]:
    return [np.array([rouge_f1("rouge1", h, r.generated) for h in r.history]) for r in records]


def _pc(similarities, reduce):
    def metric(records, truth) -> float | None:
        judged = _with_history(records)
        if not judged:
            return None
        return float(np.mean([reduce(s) for s in similarities(judged)]))

    return metric


pc_avg, pc_max = _pc(_embedding_similarities, np.mean), _pc(_embedding_similarities, np.max)
pc_avg_tok, pc_max_tok = _pc(_token_similarities, np.mean), _pc(_token_similarities, np.max)
