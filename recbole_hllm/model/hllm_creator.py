"""HLLMCreator: personalised ad titles from a user embedding.

Wang et al., "HLLM-Creator: Hierarchical LLM-based Personalized Creative Generation",
arXiv 2508.18118.

HLLM's item and user LLMs (inherited, not copied) yield the user embedding U: the
user LLM reads the history's item embeddings, optional user-prompt tokens and one
learnable [USER] embedding; U is the last hidden state at [USER]. U reaches the creative LLM
as configured by ``user_injection`` (:mod:`recbole_hllm.model.user_conditioning`): a
per-layer key/value prefix (the default), the paper's one soft token, or both; the
creative LLM is trained to write the personalised title
(-1/L sum log p(r_i | U, ad text, r_<i)). Auxiliary losses keep U meaningful:
next-item recommendation (HLLM's loss), user-ad matching, alignment with the text
profile, and reconstruction of the profile from U.
"""
from __future__ import annotations

from logging import getLogger

import torch
from torch import nn

from recbole_hllm.config import ConfigValueError, check_creator_keys
from recbole_hllm.data.creative_dataset import CREATIVE_INDEX
from recbole_hllm.data.item_text import item_field_texts
from recbole_hllm.data.token_rows import TokenTable
from recbole_hllm.distributed.context import gather_with_grad, global_means, rank, world_size
from recbole_hllm.distributed.fsdp import ignore_sharded_in_ddp
from recbole_hllm.model.creative_llm import CreativeLLM, PromptTemplate
from recbole_hllm.model.heads import MatchingHead
from recbole_hllm.model.hllm import HLLM, next_item_targets
from recbole_hllm.model.losses import LogitScale, LossSum, full_softmax, matching_loss, symmetric_infonce
from recbole_hllm.model.schedule import JOINT, StepPlan
from recbole_hllm.model.user_conditioning import UserCondition, UserConditioner

LOSS_NAMES = ("rec", "creative", "match", "align", "recon")


class HLLMCreator(HLLM):
    def __init__(self, config, dataset):
        check_creator_keys(config)
        super().__init__(config, dataset)
        self.user_prompt_text = config["user_prompt"] or ""
        self.loss_weights = {name: float(config[f"{name}_loss_weight"]) for name in LOSS_NAMES}
        self.use_user_embedding = bool(config["use_user_embedding"])
        # "profile": the user's text profile is also written as words at the prompt's {user}
        # slot (with use_user_embedding False: the profile-prompt reference baseline)
        self.creative_user_text = config["creative_user_text"]
        if not self.use_user_embedding:  # ablation: U never reaches the creative LLM
            self.loss_weights.update(align=0.0, recon=0.0)
        self.match_negatives = config["match_negatives"]
        self.condition_space = config["user_condition_space"]
        self.creative_trains_user = bool(config["creative_loss_trains_user"])
        self.generation = {k: config[f"generation_{k}"] for k in
                           ("max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "batch_size")}
        # guidance on U at decoding time (backbones/guidance.py); a checkpoint saved before these keys has none
        self.generation.update(user_guidance=self._applicable_guidance(config),
                               guidance_contrast=config["generation_guidance_contrast"] or "anchor")

        h_user = self.user_encoder.hidden_size
        self.user_token = nn.Parameter(torch.randn(h_user) * 0.02)  # [USER]
        self.register_buffer("user_prompt_ids", self._user_prompt_ids(), persistent=False)  # [P]
        self.creative = CreativeLLM(config, self.device)
        self.template = PromptTemplate(config["creative_prompt"], "creative_prompt")
        self.profile_template = PromptTemplate(config["profile_prompt"], "profile_prompt")
        self.align_proj = nn.Linear(h_user, self.item_encoder.hidden_size, bias=False)
        mode, tokens = config["user_injection"], config["user_prefix_tokens"]
        anchor = self.creative.text_kv(config["user_prefix_anchor_text"], tokens) if mode != "soft_token" else None
        token_norm = self.creative.mean_token_norm()
        self.user_to_creative = self._user_conditioner(config, h_user, anchor, token_norm)
        # shared: what the creative LLM learns to read when rewriting the profile (every
        # profile token depends on U) is what the title prompt gets
        self.user_to_profile = self.user_to_creative if config["share_user_conditioner"] else \
            self._user_conditioner(config, h_user, anchor, token_norm)
        self.matching_head = MatchingHead(h_user, h_user, config["match_hidden_size"])
        self.align_scale = LogitScale(config["logit_scale_init"], config["logit_scale_max"])

        creative = dataset.creative
        self.creative_titles = creative.titles
        self.creative_profiles = creative.profiles
        self.ad_texts = {slot: item_field_texts(dataset, slot) for slot in self.template.text_slots}
        title_field = config["creative_title_field"]
        self.original_titles = item_field_texts(dataset, title_field) if title_field in dataset.item_feat else None
        self._tokenize_creative_rows(creative)
        # [n_creative_rows, W] weight of each title token in the title loss (creative_personal_token_weight)
        self.register_buffer("title_token_weights", self._personal_token_weights(
            creative, float(config["creative_personal_token_weight"] or 1.0)), persistent=False)
        # [n_creative_rows, H_item] profile embeddings (align loss), computed on first use
        self.register_buffer("_profile_table", None, persistent=False)
        self.to(self.device)  # what was built here on the CPU joins the backbones on the device
        if self.creative.fsdp:  # FSDP owns the sharded layers' gradients, not RecBole's DDP wrapper
            ignore_sharded_in_ddp(self)

    def _tokenize_creative_rows(self, creative) -> None:
        """Token tables of every creative row's title prompt, title and profile, and of the
        reconstruction prompt: built once here, so that a training step only gathers rows
        of tensors (:mod:`recbole_hllm.data.token_rows` says why)."""
        rows = range(len(creative))
        before, after = self._prompt_parts(self.template, creative.items, self.user_texts(rows))
        self.title_before, self.title_after = TokenTable(before), TokenTable(after)
        self.title_targets = TokenTable(self.creative.target_ids(creative.titles))
        self.profile_targets = TokenTable(self.creative.target_ids(creative.profiles))
        recon_before, recon_after = self.profile_template.split()
        self.recon_before = TokenTable(self.creative.token_ids([recon_before]))  # one row, read by every user
        self.recon_after = TokenTable(self.creative.token_ids([recon_after]))
        self.register_buffer("has_profile", torch.tensor([bool(p) for p in creative.profiles], dtype=torch.bool),
                             persistent=False)  # [n_creative_rows]

    def _personal_token_weights(self, creative, weight: float) -> torch.Tensor | None:
        """``[n_creative_rows, W]`` title-token weights: ``weight`` for the tokens that are not
        in the ad's original title (the words the user changes: the selling point, the
        separators), 1 for the rest and for EOS; None when ``weight`` is 1 (plain mean).

        Why: most of a title's tokens copy the ad's name whatever the user, so the plain
        mean spends most of the gradient where U does not matter; this weights the
        decision the user drives."""
        if weight == 1.0:
            return None
        if self.original_titles is None:
            raise ConfigValueError(f"creative_personal_token_weight = {weight} needs the ad's original title: "
                                   f"creative_title_field names no .item field")
        targets = self.title_targets.ids  # [N, W], right-padded
        weights = torch.ones(targets.shape, dtype=torch.float32)
        title_tokens = {}  # item -> its title's token ids, with and without a leading space
        for row, item in enumerate(creative.items):
            if item not in title_tokens:
                title = self.original_titles[item]
                title_tokens[item] = set(sum(self.creative.token_ids([title, " " + title]), []))
            common = title_tokens[item]
            for pos, token in enumerate(targets[row, : int(self.title_targets.lengths[row]) - 1].tolist()):
                if token not in common:
                    weights[row, pos] = weight
        return weights

    def _user_conditioner(self, config, user_size: int, anchor: torch.Tensor | None,
                          token_norm: float) -> UserConditioner:
        """A U -> creative-LLM map; ``anchor`` (the prefix's start, None for soft_token) and
        ``token_norm`` (the soft token's) are the creative LLM's, computed once for both maps."""
        if config["user_condition_space"] == "align":  # it reads align_proj(U), in the item LLM's width
            user_size = self.item_encoder.hidden_size
        return UserConditioner(config["user_injection"], user_size, self.creative.hidden_size, token_norm,
                               self.creative.kv_geometry, config["user_prefix_tokens"],
                               config["user_prefix_hidden_size"], config["user_prefix_init_std"], anchor,
                               self.creative.tuned_layers)

    def generation_shard(self) -> tuple[int, int]:
        """(rank, world) whose share of generation batches this process writes; with a
        sharded creative LLM every rank runs every batch (its layers need all ranks)."""
        return (0, 1) if self.creative.fsdp else (rank(), world_size())

    @property
    def active_losses(self) -> list[str]:
        """Names of the losses ``calculate_loss`` returns, in order."""
        return [n for n in LOSS_NAMES if self.loss_weights[n]]

    @classmethod
    def reads_user_llm_words(cls, config) -> bool:
        """The ``user_prompt`` tokens between the history and [USER] are words."""
        return bool(config["user_prompt"])

    def _user_prompt_ids(self) -> torch.Tensor:
        if not self.user_prompt_text:
            return torch.zeros(0, dtype=torch.long)
        tok = self.user_encoder.tokenizer
        return torch.tensor(tok(self.user_prompt_text, add_special_tokens=False)["input_ids"], dtype=torch.long)

    # -- user embedding -------------------------------------------------------------
    def user_states(self, item_seq: torch.Tensor, seq_len: torch.Tensor, item_embeds: torch.Tensor):
        """Run the user LLM over history + user prompt + [USER].

        Returns (history states ``[B, L, H]``, U ``[B, H]``).
        """
        batch, hist_len, hidden = item_embeds.shape
        prompt = self.user_encoder.llm.get_input_embeddings()(self.user_prompt_ids.to(item_seq.device)) \
            if len(self.user_prompt_ids) else item_embeds.new_zeros(0, hidden)
        tail = torch.cat([prompt.float(), self.user_token[None]], dim=0)  # [P+1, H]
        width = hist_len + len(tail)
        embeds = torch.cat([item_embeds, item_embeds.new_zeros(batch, len(tail), hidden)], dim=1)
        rows = torch.arange(batch, device=item_seq.device)[:, None]
        tail_pos = seq_len[:, None] + torch.arange(len(tail), device=item_seq.device)[None]  # [B, P+1]
        embeds = embeds.index_put((rows.expand_as(tail_pos), tail_pos), tail.expand(batch, -1, -1))
        positions = torch.arange(width, device=item_seq.device)[None]
        mask = (positions <= tail_pos[:, -1:]).long()
        states = self.user_encoder(embeds, attention_mask=mask)  # [B, W, H]
        user_vec = states[torch.arange(batch, device=item_seq.device), tail_pos[:, -1]]
        return states[:, :hist_len], user_vec

    def user_embedding(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """U for each history: ``[B, H_user]``."""
        item_seq, seq_len = self.on_model(item_seq, seq_len)
        return self.user_states(item_seq, seq_len, self.item_vectors(item_seq))[1]

    def match_score(self, user_vecs: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        """Matching logit of users ``[B, H]`` with ads ``[B]`` or ``[B, K]`` (used to prune pairs)."""
        user_vecs, item_ids = self.on_model(user_vecs, item_ids)
        item_vecs = self.item_vectors(item_ids)
        if item_ids.dim() == 2:
            user_vecs = user_vecs[:, None]
        return self.matching_head(user_vecs, item_vecs)

    # -- training -------------------------------------------------------------------
    def calculate_loss(self, interaction, plan: StepPlan = JOINT):
        """The weighted active losses (``active_losses``) of one batch; ``plan`` says whether
        the creative side trains and the profile-teacher share (the trainer's schedule)."""
        item_seq, seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        pos_items = interaction[self.POS_ITEM_ID]
        creative_rows = interaction[CREATIVE_INDEX]
        targets = next_item_targets(item_seq, seq_len, pos_items)
        infonce = self.loss_weights["rec"] and self.loss_type != "full_softmax"
        rec_negatives = self.sample_negatives(item_seq.device) if infonce else None
        match_negatives = torch.randint(1, self.n_items, (len(pos_items), self.match_negatives),
                                        device=item_seq.device) if self.loss_weights["match"] else None
        seq_vecs, target_vecs, rec_negative_vecs, pos_vecs, match_negative_vecs = self._step_item_vectors(
            item_seq, targets, rec_negatives, pos_items, match_negatives)
        states, user_vec = self.user_states(item_seq, seq_len, seq_vecs)
        losses = {}
        if self.loss_weights["rec"]:
            losses["rec"] = self._rec_loss(targets, rec_negatives, states, target_vecs, rec_negative_vecs)
        if self.loss_weights["match"]:
            losses["match"] = matching_loss(self.matching_head(user_vec, pos_vecs),
                                            self.matching_head(user_vec[:, None], match_negative_vecs))
        has_creative = creative_rows >= 0
        rows, u = creative_rows[has_creative], user_vec[has_creative]  # [N], [N, H_user]
        with_profile = self.has_profile[rows]  # [N]
        profile_rows = rows[with_profile]
        if self.loss_weights["creative"] and plan.creative:
            losses["creative"] = self._creative_loss(rows, self._training_signal(u, rows, plan.teacher_share))
        if self.loss_weights["align"]:
            profile_vecs = self._profile_vectors()[profile_rows]
            losses["align"] = self._align_loss(self.align_proj(u[with_profile]), profile_vecs)
        if self.loss_weights["recon"] and plan.creative:
            losses["recon"] = self._recon_loss(profile_rows, self._training_signal(u[with_profile]))
        # Every active loss takes part in the one reduction over processes, with no items where
        # this step has none (warm-up, no creative rows): each rank then makes the same collective call.
        zero = LossSum(user_vec.sum() * 0, 0)
        means = global_means([losses.get(n, zero) for n in self.active_losses])
        return tuple(self.loss_weights[n] * mean for n, mean in zip(self.active_losses, means))

    def _step_item_vectors(self, *id_tensors) -> list[torch.Tensor | None]:
        """:meth:`item_vectors` of each id tensor a step needs (None stays None). A
        trainable item LLM embeds their union once (:meth:`item_vectors_once`); a frozen
        one is a table lookup, done per tensor as before, so the frozen default's numbers
        stay bit for bit."""
        needed = [ids for ids in id_tensors if ids is not None]
        if self.item_encoder.frozen:
            found = iter([self.item_vectors(ids) for ids in needed])
        else:
            found = iter(self.item_vectors_once(*needed))
        return [None if ids is None else next(found) for ids in id_tensors]

    def _align_loss(self, projected: torch.Tensor, profile_vecs: torch.Tensor) -> LossSum:
        """Symmetric InfoNCE of align_proj(U) ``[N, H_item]`` against the profile embeddings, with
        every process's rows as in-batch negatives (gathered with their gradients)."""
        all_projected, offset = gather_with_grad(projected)
        all_profiles, _ = gather_with_grad(profile_vecs)
        return symmetric_infonce(projected, profile_vecs, self.align_scale(), all_projected, all_profiles, offset)

    def _rec_loss(self, targets, negative_ids, states, target_vecs, negative_vecs) -> LossSum:
        if self.loss_type == "full_softmax":
            supervised = targets > 0
            return full_softmax(states[supervised], self.item_table(), targets[supervised], self.logit_scale())
        return self.next_item_infonce(states, targets, target_vecs, negative_ids, negative_vecs)

    def _prompt_parts(self, template: PromptTemplate, items: list[int], user_texts: list[str] | None = None):
        """Token ids of each row's prompt before and after the user slot; ``user_texts``
        (one per row, see ``creative_user_text``) are written at the slot, before U."""
        if self.creative_user_text and user_texts is None:
            raise ConfigValueError(f"creative_user_text = {self.creative_user_text!r}: every title prompt needs "
                                   "its user's text; clustered inference and hllm-generate write from U only")
        before, after = [], []
        for row, item in enumerate(items):
            b, a = template.split(**{slot: texts[item] for slot, texts in self.ad_texts.items()})
            before.append(b + (user_texts[row] if self.creative_user_text else ""))
            after.append(a)
        return self.creative.token_ids(before), self.creative.token_ids(after)

    def user_texts(self, creative_rows) -> list[str] | None:
        """The words each title prompt writes for its user (``creative_user_text``), by
        creative row: the row's text profile; None when the prompt has no user words."""
        if not self.creative_user_text:
            return None
        return [self.creative_profiles[r] for r in creative_rows]

    @property
    def has_user_signal(self) -> bool:
        """Whether the title depends on the user at all (U, or the user's words)."""
        return self.use_user_embedding or bool(self.creative_user_text)

    def condition_signal(self, user_vec: torch.Tensor) -> torch.Tensor:
        """What the U -> creative-LLM map reads for users ``[B, H_user]``: U itself, or
        (``user_condition_space: align``) align_proj(U) ``[B, H_item]``, the projection the
        align loss pulls towards the embedding of the user's text profile."""
        return self.align_proj(user_vec) if self.condition_space == "align" else user_vec

    def _training_signal(self, user_vec: torch.Tensor, rows: torch.Tensor | None = None,
                         teacher_share: float = 0.0) -> torch.Tensor:
        """``condition_signal`` as the title and reconstruction losses see it: cut from the
        user side's gradients unless ``creative_loss_trains_user``; with a ``teacher_share``,
        that share of the ``rows`` that have a profile read the profile's embedding
        instead: a clean signal in the same space, which the creative LLM can learn to read
        from the first step (a curriculum that the trainer fades out, so that at the end,
        and at test time, only U is read)."""
        signal = self.condition_signal(user_vec)
        if not self.creative_trains_user:
            signal = signal.detach()
        if not teacher_share or rows is None or len(rows) == 0:
            return signal
        teach = self.has_profile[rows] & (torch.rand(len(rows), device=signal.device) < teacher_share)
        if not teach.any():
            return signal
        profiles = self._profile_vectors()[rows]
        return torch.where(teach[:, None], profiles.to(signal.dtype), signal)

    def user_condition(self, user_vec: torch.Tensor) -> UserCondition | None:
        """What the title prompt receives for users ``[B, H_user]`` (None in the no-U ablation)."""
        return self.user_to_creative(self.condition_signal(user_vec)) if self.use_user_embedding else None

    def _creative_loss(self, rows: torch.Tensor, signal: torch.Tensor) -> LossSum:
        """Title loss of creative ``rows [N]``; ``signal`` is what the U -> creative-LLM map
        reads (see ``condition_signal``)."""
        if len(rows) == 0:
            return self.creative.token_loss([], None, [], [])
        condition = self.user_to_creative(signal) if self.use_user_embedding else None
        targets = self.title_targets(rows)
        weights = None if self.title_token_weights is None else \
            self.title_token_weights[rows.to(self.title_token_weights.device), : targets.ids.shape[1]]
        return self.creative.token_loss(self.title_before(rows), condition, self.title_after(rows), targets,
                                        weights)

    def _recon_loss(self, rows: torch.Tensor, signal: torch.Tensor) -> LossSum:
        """Profile-reconstruction loss of creative ``rows [N]`` (rows with a profile)."""
        if len(rows) == 0:
            return self.creative.token_loss([], None, [], [])
        prompt_row = torch.zeros_like(rows)  # the one row of the reconstruction prompt, for every user
        return self.creative.token_loss(self.recon_before(prompt_row), self.user_to_profile(signal),
                                  self.recon_after(prompt_row), self.profile_targets(rows))

    def _profile_vectors(self) -> torch.Tensor:
        """``[n_creative_rows, H_item]``: the item LLM's embedding of each row's profile
        (no grad). Each distinct text is embedded once (a user's rows share one profile);
        with a frozen item LLM the table is kept for the whole run, otherwise it is
        rebuilt once per training epoch (the item LLM's weights move)."""
        if self._profile_table is None:
            texts = list(dict.fromkeys(self.creative_profiles))
            row_of = {text: i for i, text in enumerate(texts)}
            with torch.no_grad():
                table = self.item_encoder.embed_texts(texts)
            self._profile_table = table[torch.tensor([row_of[p] for p in self.creative_profiles],
                                                     device=table.device)]
        return self._profile_table

    # -- generation -----------------------------------------------------------------
    def _applicable_guidance(self, config) -> float:
        """``generation_user_guidance``, or 0 where guidance on U cannot apply: with no U
        (``use_user_embedding: False``, the ablation and the profile-prompt reference) there
        is nothing to guide on, and sampled rows would drift apart from their contrast rows.
        Guidance is on by default, so switching U off or sampling on must not need a second
        key; the log says it is off."""
        guidance = float(config["generation_user_guidance"] or 0.0)
        reason = ("no U reaches the creative LLM (use_user_embedding: False)" if not self.use_user_embedding
                  else "decoding samples (generation_do_sample: True)" if config["generation_do_sample"] else None)
        if guidance and reason:
            getLogger().warning(f"generation_user_guidance = {guidance} is off for this run: it guides greedy "
                                f"decoding on U, and {reason}")
            return 0.0
        return guidance

    @property
    def decoding_settings(self) -> dict:
        """The ``generation_*`` settings ``generate_from_user_vectors`` takes (all but the batch size)."""
        return {k: v for k, v in self.generation.items() if k != "batch_size"}

    @torch.no_grad()
    def generate_titles(self, item_seq, seq_len, item_ids, shard: tuple[int, int] = (0, 1),
                        user_texts: list[str] | None = None, **overrides) -> tuple[list[str | None], int]:
        """Personalised titles for ads ``item_ids`` [B] given histories ``[B, L]`` (and,
        with ``creative_user_text``, each row's user words ``user_texts``).

        Rows are batched by prompt length (less padding to compute) and returned in
        the input order. ``shard=(rank, world)`` generates only every world-th batch
        (None for the other rows): the batches are the same for any world size, so
        the shards of a multi-process run together equal the one-process output."""
        settings = {**self.generation, **overrides}
        item_seq, seq_len, item_ids = self.on_model(item_seq, seq_len, item_ids)
        batch_size = settings.pop("batch_size")
        order = self.prompt_length_order(item_ids.tolist())
        titles, new_tokens = [None] * len(order), 0
        this_rank, world = shard
        with self.creative.merged_for_generation():  # once for all batches: a merge costs seconds
            for start in range(this_rank * batch_size, len(order), world * batch_size):
                part = torch.tensor(order[start : start + batch_size], device=item_seq.device)
                user_vec = self.user_embedding(item_seq[part], seq_len[part])
                words = None if user_texts is None else [user_texts[i] for i in part.tolist()]
                texts, n = self.generate_from_user_vectors(user_vec, item_ids[part].tolist(), user_texts=words,
                                                           **settings)
                for row, text in zip(part.tolist(), texts):
                    titles[row] = text
                new_tokens += n
        return titles, new_tokens

    def prompt_length_order(self, items: list[int]) -> list[int]:
        """Row indices sorted by the length of their ad's prompt text (stable)."""
        lengths = [sum(len(texts[item]) for texts in self.ad_texts.values()) for item in items]
        return sorted(range(len(items)), key=lengths.__getitem__)

    @torch.no_grad()
    def generate_from_user_vectors(self, user_vec, items: list[int], user_texts: list[str] | None = None,
                                   **settings) -> tuple[list[str], int]:
        """Titles for (user embedding, ad) pairs; clustered inference passes centroids here."""
        before, after = self._prompt_parts(self.template, items, user_texts)
        user_vec = self.on_model(user_vec)
        contrast_kind = settings.pop("guidance_contrast", "anchor")
        contrast = self.contrast_condition(user_vec, contrast_kind) if settings.get("user_guidance") else None
        return self.creative.generate(before, self.user_condition(user_vec), after, contrast=contrast, **settings)

    def contrast_condition(self, user_vec: torch.Tensor, contrast: str) -> UserCondition:
        """What guided decoding (``generation_user_guidance``) sets each row's own condition
        against: ``anchor``, the prefix with no user in it, or ``batch_mean``, the condition of
        the mean U of the rows generated together."""
        if not self.use_user_embedding:
            raise ConfigValueError("generation_user_guidance > 0 needs U (use_user_embedding: True)")
        if contrast == "anchor":
            return self.user_to_creative.anchor_condition(len(user_vec))
        mean = user_vec.mean(dim=0, keepdim=True).expand_as(user_vec)
        return self.user_condition(mean)

    def train(self, mode: bool = True):
        if mode and not self.item_encoder.frozen:
            self._profile_table = None
        return super().train(mode)
