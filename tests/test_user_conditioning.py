"""How U enters the creative LLM (user_injection): prefix shapes, exact generation, the
warm-up schedule, the shuffled-U check, and that trained titles depend on U at all."""
import json

import numpy as np
import pytest
import torch
from recbole.quick_start import run_recbole

from recbole_hllm.backbones.prefix_cache import KVGeometry
from recbole_hllm.config import ConfigValueError
from recbole_hllm.evaluation.u_gain import derangement, sample_rows
from recbole_hllm.model.hllm_creator import HLLMCreator
from recbole_hllm.model.schedule import StepPlan
from recbole_hllm.model.user_conditioning import UserConditioner

from conftest import TINY_LLAMA, build_model, tiny_creator_config


def build(data_root, **overrides):
    return build_model(HLLMCreator, tiny_creator_config(data_root, **overrides))


def _user_vecs(model, n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, model.user_encoder.hidden_size, generator=generator).to(model.device)


def test_prefix_shapes_follow_a_gqa_config_with_its_own_head_dim(tiny_creative_data):
    """4 query heads, 2 key/value heads, head_dim 16 (not hidden / heads = 8), as in Qwen3."""
    creative_config = dict(TINY_LLAMA, max_position_embeddings=256, head_dim=16)
    model, _, _, _ = build(tiny_creative_data, creative_llm_config=creative_config, user_prefix_tokens=3)
    assert model.creative.kv_geometry == KVGeometry(layers=2, kv_heads=2, head_dim=16)
    condition = model.user_condition(_user_vecs(model, 5))
    assert condition.soft_tokens is None and condition.prefix.shape == (2, 2, 5, 2, 3, 16)
    assert condition.rows([1, 3]).prefix.shape == (2, 2, 2, 2, 3, 16)
    before, after = model._prompt_parts(model.template, [1, 2, 3, 4, 5])
    loss = model.creative.loss(before, condition, after, model.creative.target_ids(["a b"] * 5))
    assert torch.isfinite(loss)
    titles, _ = model.creative.generate(before, condition, after, max_new_tokens=4)
    assert len(titles) == 5


def test_both_mode_gives_a_soft_token_and_a_prefix(tiny_creative_data):
    model, _, _, _ = build(tiny_creative_data, user_injection="both", user_prefix_tokens=2)
    condition = model.user_condition(_user_vecs(model, 3))
    assert condition.soft_tokens.shape == (3, model.creative.hidden_size)
    assert condition.prefix.shape[-2] == 2


@pytest.mark.exact_numerics
@pytest.mark.parametrize("mode", ["prefix", "both", "soft_token"])
def test_teacher_forced_argmax_equals_greedy_generation(tiny_creative_data, mode):
    """Training and generation see the prefix at the same positions: greedy tokens are
    exactly the argmax of the teacher-forced logits of the same condition."""
    model, _, _, _ = build(tiny_creative_data, user_injection=mode, user_prefix_init_std=0.5)
    model.eval()
    creative = model.creative
    before, after = model._prompt_parts(model.template, [4])
    for seed in range(3):
        condition = model.user_condition(_user_vecs(model, 1, seed))
        generated = creative.generate_ids(before, condition, after, max_new_tokens=6)[0].tolist()
        if creative.eos_id in generated:
            generated = generated[: generated.index(creative.eos_id) + 1]
        with torch.no_grad():
            logits, labels = creative.target_logits(before, condition, after, [generated])
        assert labels.tolist() == generated
        assert logits.argmax(-1).tolist() == generated


@pytest.mark.parametrize("mode", ["prefix", "soft_token"])
def test_left_padded_batch_generation_equals_one_row_generation(tiny_creative_data, mode):
    model, _, _, _ = build(tiny_creative_data, user_injection=mode, user_prefix_init_std=0.5,
                           generation_max_new_tokens=8)
    model.eval()
    texts = ["an ad", "a much longer ad for a film about a drama", "ad", "a horror film", "comedy night out"]
    before, after = model._prompt_parts(model.template, [1] * len(texts))
    after = [a + t for a, t in zip(after, model.creative.token_ids(texts))]  # prompts of different lengths
    assert len({len(b) + len(a) for b, a in zip(before, after)}) >= 4
    condition = model.user_condition(_user_vecs(model, len(texts)))
    batch, _ = model.creative.generate(before, condition, after, max_new_tokens=8)
    for row in range(len(texts)):
        alone, _ = model.creative.generate(before[row : row + 1], condition.rows(slice(row, row + 1)),
                                           after[row : row + 1], max_new_tokens=8)
        assert alone == [batch[row]]


@pytest.mark.parametrize("mode", ["prefix", "soft_token"])
def test_generation_dtype_autocasts_generation_only(tiny_creative_data, mode):
    """generation_dtype: bfloat16 runs the creative LLM's generate under bf16 autocast
    (the weights, the training path and the prefix stay float32); auto resolves to bf16
    exactly where bf16 is native."""
    from recbole_hllm.backbones.backbone import fast_bf16

    model, _, _, _ = build(tiny_creative_data, user_injection=mode, generation_dtype="bfloat16")
    model.eval()
    seen = []
    model.creative._base()[0].layers[-1].register_forward_hook(
        lambda *_: seen.append((torch.is_autocast_enabled(model.device.type),
                                torch.get_autocast_dtype(model.device.type))))
    titles, new_tokens = model.generate_from_user_vectors(_user_vecs(model, 3), [1, 2, 3], **model.decoding_settings)
    assert len(titles) == 3 and new_tokens > 0
    assert seen and set(seen) == {(True, torch.bfloat16)}
    assert next(model.creative.llm.parameters()).dtype == torch.float32
    seen.clear()
    before, after = model._prompt_parts(model.template, [1])
    model.creative.target_logits(before, model.user_condition(_user_vecs(model, 1)), after, [[5, 6]])
    assert seen and not any(enabled for enabled, _ in seen)  # the training path: no autocast
    auto, _, _, _ = build(tiny_creative_data, user_injection=mode, generation_dtype="auto")
    expected = torch.bfloat16 if fast_bf16(auto.device) else torch.float32
    assert auto.creative.generation_dtype == expected


def test_the_lm_head_reads_a_contiguous_input_in_generation(tiny_creative_data):
    """generate runs the LM head on hidden[:, -1:] after the prompt, a strided view; with
    bf16 weights torch's CPU matmul then copies the vocabulary table once per row (GBs)."""
    model, _, _, _ = build(tiny_creative_data, creative_llm_dtype="bfloat16", generation_dtype="bfloat16")
    model.eval()
    seen = []
    model.creative._base()[1].register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))
    model.generate_from_user_vectors(_user_vecs(model, 3), [1, 2, 3], **model.decoding_settings)
    assert seen and all(seen)


@pytest.mark.parametrize("native", [True, False])
def test_native_compute_dtype_is_bf16_exactly_where_bf16_is_native(monkeypatch, native):
    """``*_llm_dtype: native`` trains in bf16 where bf16 is native (CUDA, AVX512-BF16, AMX)
    and in float32 elsewhere; ``auto`` stays float32 on every CPU."""
    from recbole_hllm.backbones import backbone

    monkeypatch.setattr(backbone, "fast_bf16", lambda device: native)
    cpu = torch.device("cpu")
    assert backbone.resolve_dtype("native", cpu) == (torch.bfloat16 if native else torch.float32)
    assert backbone.resolve_dtype("auto", cpu) == torch.float32


def test_the_prefix_turns_the_shared_prompt_cache_off(tiny_creative_data):
    """With a user prefix, the instruction's keys and values depend on the user: the
    prompt start must not be encoded once for the whole batch."""
    model, _, _, _ = build(tiny_creative_data)
    model.eval()
    calls = []
    model.creative._shared_prompt_cache = lambda *a: calls.append(a)
    model.generate_from_user_vectors(_user_vecs(model, 3), [1, 2, 3], **model.decoding_settings)
    assert calls == []


@pytest.mark.parametrize("overrides,message", [
    ({"user_injection": "deep"}, r"user_injection = 'deep' \(expected 'soft_token', 'prefix' or 'both'\)"),
    ({"user_prefix_tokens": 0}, r"user_prefix_tokens = 0 \(expected an int >= 1"),
    ({"user_prefix_tokens": "four"}, r"user_prefix_tokens = 'four' \(expected an int >= 1"),
    ({"user_warmup_epochs": 1, "epochs": 1}, r"user_warmup_epochs = 1 must be less than epochs = 1"),
])
def test_bad_conditioning_settings_are_named(tiny_creative_data, overrides, message):
    with pytest.raises(ConfigValueError, match=message):
        build(tiny_creative_data, **overrides)


def test_conditioner_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="user_injection = 'x': expected one of soft_token, prefix, both"):
        UserConditioner("x", 8, 8, 1.0, KVGeometry(1, 1, 8), 1, 8, 0.02, None)


def test_derangement_moves_every_row_and_is_seeded():
    for n in (2, 3, 10, 101):
        perm = derangement(n, np.random.default_rng(5))
        assert sorted(perm) == list(range(n)) and all(perm[i] != i for i in range(n))
    assert (sample_rows(50, 10, 1)[1] == sample_rows(50, 10, 1)[1]).all()
    sample, donors = sample_rows(50, 10, 1)
    assert len(set(sample)) == 10 and set(donors) == set(sample) and (donors != sample).all()
    with pytest.raises(ValueError, match="at least 2 rows"):
        derangement(1, np.random.default_rng(0))


def test_warmup_epochs_train_the_user_side_only_and_are_never_the_best(tiny_creative_data, caplog):
    """Epochs 0-1 train rec/match/align only (the creative LLM does not move) and are not
    validated; RecBole's selection can only return epoch 2 or later."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_hllm.trainer import HLLMCreatorTrainer

    config = Config(model="HLLMCreator", dataset="tiny", config_dict=tiny_creator_config(
        tiny_creative_data, epochs=3, user_warmup_epochs=2, valid_metric="ndcg@10"))
    init_seed(config["seed"], True)
    train, valid, _ = data_preparation(config, create_dataset(config))
    model = HLLMCreator(config, train._dataset)
    trainer = HLLMCreatorTrainer(config, model)
    creative_before = {n: p.detach().clone() for n, p in model.creative.named_parameters() if p.requires_grad}
    user_before = model.user_token.detach().clone()
    validated, trained, plans = [], [], []
    original_valid, original_train = trainer._valid_epoch, trainer._train_epoch
    calculate = model.calculate_loss
    model.calculate_loss = lambda batch, plan: plans.append(plan) or calculate(batch, plan)

    def train_epoch(data, epoch_idx, **kw):
        loss = original_train(data, epoch_idx, **kw)
        if epoch_idx == 1:  # end of the warm-up
            moved = [n for n, p in model.creative.named_parameters() if p.requires_grad
                     and not torch.equal(p, creative_before[n])]
            trained.append((moved, torch.equal(model.user_token, user_before), plans[-1].creative))
        return loss

    trainer._train_epoch = train_epoch
    trainer._valid_epoch = lambda *a, **kw: validated.append(trainer.start_epoch) or original_valid(*a, **kw)
    trainer.fit(train, valid, saved=True)
    [(moved, user_unchanged, creative_on)] = trained
    assert moved == [] and not user_unchanged and not creative_on
    assert len(validated) == 1 and plans[-1].creative  # only epoch 2 was validated
    checkpoint = torch.load(trainer.saved_model_file, weights_only=False)
    assert checkpoint["epoch"] == 2


def test_test_run_reports_shuffled_u_metrics_and_titles(tiny_creative_data):
    config = tiny_creator_config(tiny_creative_data, generation_metrics=["rouge-l", "titles_per_ad"],
                                 shuffled_u_pairs=10)
    result = run_recbole(model="HLLMCreator", dataset="tiny", config_dict=config)["test_result"]
    assert {"rouge-l", "shuffled_rouge-l", "shuffled_titles_per_ad"} <= set(result)
    assert "u_gain" not in result  # no ground truth here: interest-hit cannot be scored
    [titles] = list((tiny_creative_data / "saved").glob("HLLMCreator-*-titles.jsonl"))
    rows = [json.loads(line) for line in titles.read_text().splitlines()]
    shuffled = [r for r in rows if "shuffled_u_generated" in r]
    assert len(shuffled) == 10 and all(r["shuffled_u_user"] != r["user"] for r in shuffled)
    off = run_recbole(model="HLLMCreator", dataset="tiny", config_dict={**config, "shuffled_u_pairs": 0})
    assert not any(k.startswith("shuffled_") for k in off["test_result"])
    no_u = run_recbole(model="HLLMCreator", dataset="tiny", config_dict={**config, "use_user_embedding": False})
    assert "rouge-l" in no_u["test_result"]  # the ablation has no U to shuffle: no shuffled pass
    assert not any(k.startswith("shuffled_") or k == "u_gain" for k in no_u["test_result"])
    words = run_recbole(model="HLLMCreator", dataset="tiny", config_dict={**config, "use_user_embedding": False,
                                                                         "creative_user_text": "profile"})
    assert "shuffled_rouge-l" in words["test_result"]  # the profile baseline's user signal is its words


# -- do trained titles depend on U at all? -------------------------------------------------------
WORDS = ["drama", "comedy", "action", "horror"]


@pytest.mark.parametrize("mode", ["prefix", "soft_token"])
def test_trained_titles_depend_on_the_users_own_u(tiny_creative_data, mode):
    """Each of 16 users has a fixed random U and one of four words; the target title is
    that word, whatever the ad. After a few dozen steps, titles written with each user's
    own U name the user's word far more often than titles written with another user's U,
    and the two differ. (Every generation-equality test would pass if the creative LLM
    ignored U; this one fails then.)"""
    no_user_side = {f"{n}_loss_weight": 0.0 for n in ("rec", "match", "align", "recon")}
    model, _, _, _ = build(tiny_creative_data, user_injection=mode, user_prefix_init_std=0.3, **no_user_side)
    torch.manual_seed(0)
    users = torch.randn(16, model.user_encoder.hidden_size).to(model.device)
    words = [WORDS[u % len(WORDS)] for u in range(16)]
    optimizer = torch.optim.Adam([{"params": list(model.user_to_creative.parameters()), "lr": 1e-2},
                                  {"params": [p for p in model.creative.parameters() if p.requires_grad]}], lr=3e-3)
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(60):
        batch = rng.choice(16, 8, replace=False)
        items = rng.integers(1, 30, 8).tolist()
        before, after = model._prompt_parts(model.template, items)
        loss = model.creative.loss(before, model.user_condition(users[batch]), after,
                                   model.creative.target_ids([words[u] for u in batch]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    items = [5] * 16
    donors = derangement(16, np.random.default_rng(1))
    own, _ = model.generate_from_user_vectors(users, items, **model.decoding_settings)
    shuffled, _ = model.generate_from_user_vectors(users[donors], items, **model.decoding_settings)
    own_right = sum(words[u] in own[u] for u in range(16))
    shuffled_right = sum(words[u] in shuffled[u] for u in range(16))
    assert own != shuffled
    assert own_right >= 10 and own_right >= shuffled_right + 6, (own, shuffled)  # prefix 16 vs 2, soft token 11 vs 2


# -- reading U from the alignment space, with the profile embedding as a fading teacher --------------
def test_align_space_conditioner_reads_the_projection_of_u(tiny_creative_data):
    model, train, _, _ = build(tiny_creative_data, user_condition_space="align", **_only_creative())
    assert model.user_to_creative.prefix.mlp[0].in_features == model.item_encoder.hidden_size
    batch = _creative_batch(train, model.device)
    model.calculate_loss(batch)[0].backward()
    assert model.align_proj.weight.grad.abs().sum() > 0  # the title loss trains the projection too
    user_vec = _user_vecs(model, 2)
    direct = model.user_to_creative(model.align_proj(user_vec)).prefix
    assert torch.equal(model.user_condition(user_vec).prefix, direct)


def test_profile_teacher_replaces_u_by_the_profile_embedding(tiny_creative_data):
    model, train, _, _ = build(tiny_creative_data, user_condition_space="align", profile_teacher_rate=1.0,
                               **_only_creative())
    batch = _creative_batch(train, model.device)
    seen = []
    model.user_to_creative.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    model.calculate_loss(batch, StepPlan(teacher_share=1.0))[0].backward()
    rows = batch["creative_index"][batch["creative_index"] >= 0].tolist()
    assert torch.equal(seen[-1], model._profile_vectors()[rows])  # every row with a profile reads it
    assert model.user_token.grad is None or model.user_token.grad.abs().sum() == 0  # U is not read
    model.calculate_loss(batch, StepPlan(teacher_share=0.0))[0].backward()
    assert model.user_token.grad.abs().sum() > 0
    with pytest.raises(ConfigValueError, match="profile_teacher_rate > 0 needs user_condition_space: align"):
        build(tiny_creative_data, profile_teacher_rate=0.5)


def test_the_trainer_fades_the_teacher_out_over_the_joint_epochs(tiny_creative_data):
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_hllm.trainer import HLLMCreatorTrainer

    config = Config(model="HLLMCreator", dataset="tiny", config_dict=tiny_creator_config(
        tiny_creative_data, epochs=3, user_warmup_epochs=1, user_condition_space="align", profile_teacher_rate=0.8,
        train_batch_size=4))
    init_seed(config["seed"], True)
    train, valid, _ = data_preparation(config, create_dataset(config))
    model = HLLMCreator(config, train._dataset)
    shares = []
    calculate = model.calculate_loss
    model.calculate_loss = lambda batch, plan: shares.append((plan.creative, plan.teacher_share)) or calculate(batch, plan)
    HLLMCreatorTrainer(config, model).fit(train, valid, saved=False)
    steps = len(train)
    assert [s for on, s in shares[:steps]] == [0.0] * steps and not any(on for on, _ in shares[:steps])
    joint = [s for _, s in shares[steps:]]
    assert len(joint) == 2 * steps and joint[0] == pytest.approx(0.8)
    assert all(a > b for a, b in zip(joint, joint[1:])) and joint[-1] == pytest.approx(0.8 / (2 * steps))


def _only_creative():
    return {f"{n}_loss_weight": float(n == "creative") for n in ("rec", "creative", "match", "align", "recon")}


def _creative_batch(train, device):
    for batch in train:
        if (batch["creative_index"] >= 0).sum() > 1:
            return batch.to(device)
    raise AssertionError("no training batch with creative rows")


# -- weighting the title tokens the user changes ------------------------------------------------------
def test_personal_token_weight_weights_the_tokens_not_in_the_ads_title(tiny_creative_data):
    """Tiny titles read "<genre> fans love story <item>" for the ad "<genre> story number
    <item>": "fans" and "love" (and a genre the ad lacks) are the user's, the rest is the ad's."""
    model, train, _, _ = build(tiny_creative_data, creative_personal_token_weight=3.0, **_only_creative())
    tokens = model.creative.tokenizer.convert_ids_to_tokens
    weights, targets = model.title_token_weights, model.title_targets
    for row in range(len(targets)):
        ids = targets.ids[row, : int(targets.lengths[row])].tolist()
        heavy = {t for t, w in zip(tokens(ids), weights[row].tolist()) if w == 3.0}
        assert {"fans", "love"} <= heavy and not heavy & {"story", "[SEP]"}
        assert weights[row, len(ids) - 1] == 1.0  # EOS
    plain, _, _, _ = build(tiny_creative_data, **_only_creative())
    assert plain.title_token_weights is None
    batch = _creative_batch(train, model.device)
    rows = batch["creative_index"][batch["creative_index"] >= 0]
    u = model.user_embedding(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])[batch["creative_index"] >= 0]
    weighted = model._creative_loss(rows, u)
    with torch.no_grad():
        logits, labels = model.creative.target_logits(model.title_before(rows), model.user_condition(u),
                                                      model.title_after(rows), model.title_targets(rows))
    nll = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    w = torch.cat([weights[r, : int(targets.lengths[r])] for r in rows.tolist()]).to(nll.device)
    assert torch.allclose(weighted.mean(), (nll * w).sum() / w.sum(), atol=1e-5)
    assert not torch.allclose(weighted.mean(), nll.mean(), atol=1e-4)
    with pytest.raises(ConfigValueError, match="creative_personal_token_weight"):
        build(tiny_creative_data, creative_personal_token_weight=0)
