"""HLLM: Hierarchical LLMs for item and user modelling.

Chen et al., "HLLM: Enhancing Sequential Recommendations via Hierarchical Large
Language Models for Item and User Modeling", arXiv 2409.12740.

The item LLM embeds each item's text; the user LLM reads the embeddings of a user's
history and predicts the next item's embedding at every position. Trained with
InfoNCE over cosine similarities (learnable logit scale, sampled negatives), or
full-softmax cross-entropy over all items; ranks all items by cosine.
"""
from __future__ import annotations

from logging import getLogger

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_hllm.config import check_hllm_keys
from recbole_hllm.data.item_text import build_item_texts
from recbole_hllm.distributed.context import gather_no_grad, gather_with_grad, global_means
from recbole_hllm.model.item_encoder import ItemEncoder
from recbole_hllm.model.losses import LogitScale, LossSum, full_softmax, sampled_infonce
from recbole_hllm.model.user_encoder import UserEncoder


class HLLM(SequentialRecommender):
    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        check_hllm_keys(config)
        if config["torch_threads"]:
            torch.set_num_threads(config["torch_threads"])
        self.loss_type = config["hllm_loss"]
        self.num_negatives = config["num_negatives"]
        self.negative_mask_threshold = config["negative_mask_threshold"]

        item_texts = build_item_texts(dataset, config["text_fields"], config["item_text_template"],
                                      config["missing_text"])
        self.item_encoder = ItemEncoder(config, item_texts, self.device)
        self.user_encoder = UserEncoder(config, self.item_encoder.hidden_size, self.device,
                                        keep_token_embeddings=self.reads_user_llm_words(config))
        self.logit_scale = LogitScale(config["logit_scale_init"], config["logit_scale_max"])
        self.register_buffer("_eval_item_table", None, persistent=False)  # [n_items, H_user], once per eval pass
        self.to(self.device)  # the backbones load onto the device; the small modules and buffers follow
        getLogger(__name__).info("HLLM: %d items with text, e.g. %r", len(item_texts) - 1,
                                 item_texts[1] if len(item_texts) > 1 else "")

    @classmethod
    def reads_user_llm_words(cls, config) -> bool:
        """Whether the user LLM reads word tokens besides item embeddings (then it keeps its
        vocabulary table, which HLLM drops). A function of the config, so a subclass answers
        it before any of its own attributes exist."""
        return False

    def on_model(self, *tensors: torch.Tensor):
        """``tensors`` on the model's device (public methods accept them from any device)."""
        device = self.item_encoder.device
        moved = tuple(t.to(device) for t in tensors)
        return moved[0] if len(moved) == 1 else moved

    # -- item side ----------------------------------------------------------------
    def item_vectors(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Item embeddings in the user LLM's space: ``[*ids.shape, H_user]``. In eval mode a
        trainable item LLM is read from the pass's table (:meth:`item_table`) instead of
        running again on every batch's histories."""
        item_ids = self.on_model(item_ids)
        if not self.training and not self.item_encoder.frozen:
            return self.item_table()[item_ids]
        return self.user_encoder.item_to_user(self.item_encoder(item_ids))

    def item_table(self) -> torch.Tensor:
        """``[n_items, H_user]``: all items; computed once per evaluation pass in eval mode."""
        if self.training:
            return self.user_encoder.item_to_user(self.item_encoder.all_items())
        if self._eval_item_table is None:
            with torch.no_grad():
                self._eval_item_table = self.user_encoder.item_to_user(self.item_encoder.all_items())
        return self._eval_item_table

    def train(self, mode: bool = True):
        self._eval_item_table = None  # weights may change: the next eval pass re-embeds
        return super().train(mode)

    # -- user side ----------------------------------------------------------------
    def sequence_states(self, item_seq: torch.Tensor, item_embeds: torch.Tensor) -> torch.Tensor:
        """User LLM over a right-padded history ``[B, L]`` with embeddings ``[B, L, H]`` -> ``[B, L, H]``."""
        return self.user_encoder(item_embeds, attention_mask=(item_seq > 0).long())

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """``[B, H_user]``: the prediction for the item after each history."""
        item_seq, item_seq_len = self.on_model(item_seq, item_seq_len)
        states = self.sequence_states(item_seq, self.item_vectors(item_seq))
        return self.gather_indexes(states, item_seq_len - 1)

    # -- training -----------------------------------------------------------------
    def calculate_loss(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]  # [B, L] right-padded
        seq_len = interaction[self.ITEM_SEQ_LEN]  # [B]
        targets = next_item_targets(item_seq, seq_len, interaction[self.POS_ITEM_ID])  # [B, L], 0 = none
        supervised = targets > 0
        if self.loss_type == "full_softmax":
            table = self.item_table()  # [n_items, H]
            states = self.sequence_states(item_seq, table[item_seq])
            loss = full_softmax(states[supervised], table, targets[supervised], self.logit_scale())
        else:
            negative_ids = self.sample_negatives(item_seq.device)
            seq_vecs, target_vecs, negative_vecs = self.item_vectors_once(item_seq, targets, negative_ids)
            states = self.sequence_states(item_seq, seq_vecs)
            loss = self.next_item_infonce(states, targets, target_vecs, negative_ids, negative_vecs)
        return global_means([loss])[0]  # the mean over every process's positions

    def item_vectors_once(self, *id_tensors: torch.Tensor) -> list[torch.Tensor]:
        """:meth:`item_vectors` of each of ``id_tensors`` (any shapes), with every distinct
        item embedded once: a trainable item LLM then runs once per step over the union."""
        flat = torch.cat([ids.flatten() for ids in id_tensors])
        unique_ids, inverse = torch.unique(flat, return_inverse=True)
        vectors = self.item_vectors(unique_ids)[inverse]
        parts = vectors.split([ids.numel() for ids in id_tensors])
        return [part.view(*ids.shape, -1) for part, ids in zip(parts, id_tensors)]

    def sample_negatives(self, device) -> torch.Tensor:
        """``[num_negatives]`` item ids, uniform over real items (0 is padding)."""
        return torch.randint(1, self.n_items, (self.num_negatives,), device=device)

    def next_item_infonce(self, states, targets, target_vecs, negative_ids, negative_vecs) -> LossSum:
        """HLLM's InfoNCE over the supervised positions (``targets > 0``) of ``states`` [B, L, H].

        In a multi-process run every rank's sampled negatives are shared (gathered with
        their gradients), as the paper gathers them across GPUs."""
        negative_vecs, _ = gather_with_grad(negative_vecs)
        negative_ids = gather_no_grad(negative_ids)
        supervised = targets > 0
        return sampled_infonce(states[supervised], target_vecs[supervised], targets[supervised],
                               negative_vecs, negative_ids, self.logit_scale(), self.negative_mask_threshold)

    # -- evaluation ---------------------------------------------------------------
    def full_sort_predict(self, interaction):
        user_vec = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])  # [B, H]
        return cosine(user_vec, self.item_table())  # [B, n_items]

    def predict(self, interaction):
        """Scores for (history, candidate) rows; identical histories run the user LLM once,
        so RecBole's sampled evaluation (101 rows per user) costs one pass per user."""
        item_seq, seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        item_seq, seq_len = self.on_model(item_seq, seq_len)
        keys = torch.cat([item_seq, seq_len[:, None]], dim=1)
        unique_keys, inverse = torch.unique(keys, dim=0, return_inverse=True)
        user_vecs = self.forward(unique_keys[:, :-1], unique_keys[:, -1])[inverse]  # [B, H]
        item_vecs = self.item_table()[self.on_model(interaction[self.ITEM_ID])]  # [B, H]
        return torch.nn.functional.cosine_similarity(user_vecs, item_vecs, dim=-1)


def next_item_targets(item_seq: torch.Tensor, seq_len: torch.Tensor, pos_items: torch.Tensor) -> torch.Tensor:
    """``[B, L]``: the item that follows each history position (0 past the end).

    Position i < len-1 is followed by ``item_seq[i+1]``; position len-1 by the row's target.
    """
    targets = torch.zeros_like(item_seq)
    targets[:, :-1] = item_seq[:, 1:]
    rows = torch.arange(len(item_seq), device=item_seq.device)
    targets[rows, seq_len - 1] = pos_items
    positions = torch.arange(item_seq.shape[1], device=item_seq.device)
    return targets.masked_fill(positions[None, :] >= seq_len[:, None], 0)


def cosine(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """``[B, H] x [N, H] -> [B, N]`` cosine similarities."""
    return torch.nn.functional.normalize(queries, dim=-1) @ torch.nn.functional.normalize(keys, dim=-1).T
