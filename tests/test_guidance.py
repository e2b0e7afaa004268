"""Guidance on U at decoding time (generation_user_guidance, backbones/guidance.py)."""
import logging

import pytest
import torch

from recbole_hllm.backbones.guidance import PairedGuidance
from recbole_hllm.config import ConfigValueError
from recbole_hllm.model.hllm_creator import HLLMCreator
from recbole_hllm.model.user_conditioning import UserCondition

from conftest import build_model, tiny_creator_config, write_tiny_dataset


def build(data_root, **overrides):
    model, _, _, _ = build_model(HLLMCreator, tiny_creator_config(data_root, user_prefix_init_std=0.5, **overrides))
    return model.eval()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """One tiny HLLMCreator for the tests that only read it (built once: the suite's time)."""
    root = tmp_path_factory.mktemp("guidance")
    with pytest.MonkeyPatch.context() as patch:  # RecBole writes log/ under the working directory
        patch.chdir(root)
        patch.setenv("RECBOLE_HLLM_CACHE", str(root / "cache"))
        write_tiny_dataset(root / "data", creative=True)
        yield build(root / "data")


def _user_vecs(model, n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, model.user_encoder.hidden_size, generator=generator).to(model.device)


def test_paired_guidance_gives_a_row_and_its_contrast_row_the_guided_log_probs():
    scores = torch.randn(4, 7, generator=torch.Generator().manual_seed(0))
    scores[[0, 2], 3] = float("-inf")  # masked by another processor: in both halves
    guided = PairedGuidance(1.5, rows=2)(torch.zeros(4, 1, dtype=torch.long), scores.clone())
    own, contrast = scores[:2].log_softmax(-1), scores[2:].log_softmax(-1)
    expected = own + 1.5 * (own - contrast)
    expected[0, 3] = float("-inf")
    torch.testing.assert_close(guided[:2], expected)
    torch.testing.assert_close(guided[2:], guided[:2])
    assert not guided.isnan().any()
    with pytest.raises(ValueError, match="expects 4 rows"):
        PairedGuidance(1.0, rows=2)(torch.zeros(3, 1, dtype=torch.long), scores[:3])


@pytest.mark.exact_numerics
def test_guided_greedy_tokens_equal_a_step_by_step_reference(model):
    """Each row's guided tokens are the argmax of log p(own) + g (log p(own) - log p(anchor)),
    computed here step by step from teacher-forced logits, with rows of different lengths
    decoded together (left padding, prefix cache, the doubled batch)."""
    creative, scale, steps = model.creative, 2.0, 6
    before, after = model._prompt_parts(model.template, [1, 4, 2])
    after[1] = after[1] + creative.token_ids(["a much longer ad text"])[0]
    own = model.user_condition(_user_vecs(model, 3))
    contrast = model.contrast_condition(_user_vecs(model, 3), "anchor")
    guided = creative.generate_ids(before, own, after, steps, user_guidance=scale, contrast=contrast)
    plain = creative.generate_ids(before, own, after, steps)
    assert guided.shape[0] == 3
    for row in range(3):
        one = slice(row, row + 1)
        tokens = []
        for _ in range(steps):
            with torch.no_grad():
                log_own = creative.target_logits(before[one], own.rows(one), after[one], [tokens + [0]])[0][-1]
                log_con = creative.target_logits(before[one], contrast.rows(one), after[one], [tokens + [0]])[0][-1]
            log_own, log_con = log_own.log_softmax(-1), log_con.log_softmax(-1)
            tokens.append(int((log_own + scale * (log_own - log_con)).argmax()))
            if tokens[-1] == creative.eos_id:
                break
        assert guided[row, : len(tokens)].tolist() == tokens
    assert not torch.equal(guided, plain)  # a strong guidance changes some greedy token here


def test_no_guidance_or_a_contrast_equal_to_the_own_condition_changes_nothing(model):
    before, after = model._prompt_parts(model.template, [1, 2, 3])
    own = model.user_condition(_user_vecs(model, 3))
    plain = model.creative.generate_ids(before, own, after, 6)
    assert torch.equal(model.creative.generate_ids(before, own, after, 6, user_guidance=0.0,
                                                   contrast=model.contrast_condition(_user_vecs(model, 3), "anchor")),
                       plain)
    # own - contrast = 0: the guided scores are the own log-probs, whose argmax is the plain one
    assert torch.equal(model.creative.generate_ids(before, own, after, 6, user_guidance=3.0, contrast=own), plain)


def test_contrasts_are_the_anchor_prefix_or_the_batch_mean(model):
    users = _user_vecs(model, 4)
    anchor = model.contrast_condition(users, "anchor").prefix
    expected = model.user_to_creative.prefix.anchor[:, :, None].expand(-1, -1, 4, -1, -1, -1)
    assert torch.equal(anchor, expected)
    mean = model.contrast_condition(users, "batch_mean").prefix
    torch.testing.assert_close(mean, model.user_condition(users.mean(0, keepdim=True)).prefix.expand_as(mean))
    joined = UserCondition.cat(model.user_condition(users), model.contrast_condition(users, "anchor"))
    assert joined.prefix.shape[2] == 8 and torch.equal(joined.prefix[:, :, 4:], anchor)


def test_the_yaml_settings_reach_generation(tiny_creative_data):
    model = build(tiny_creative_data, generation_user_guidance=1.0, generation_guidance_contrast="batch_mean")
    assert model.decoding_settings["user_guidance"] == 1.0
    calls = []
    wrapped = model.creative._guided_ids
    model.creative._guided_ids = lambda *a: calls.append((a[4], a[5], a[6].prefix)) or wrapped(*a)
    users = _user_vecs(model, 3)
    for contrast in ("batch_mean", "anchor"):
        model.generation["guidance_contrast"] = contrast
        titles, new_tokens = model.generate_from_user_vectors(users, [1, 2, 3], **model.decoding_settings)
        assert len(titles) == 3 and new_tokens > 0
    assert [c[:2] for c in calls] == [(False, 1.0)] * 2  # greedy, gamma 1.0
    assert torch.equal(calls[0][2], model.contrast_condition(users, "batch_mean").prefix)
    assert torch.equal(calls[1][2], model.contrast_condition(users, "anchor").prefix)


@pytest.mark.parametrize("overrides,message", [
    ({"generation_user_guidance": 1.0, "generation_guidance_contrast": "anchor", "user_injection": "soft_token"},
     "'anchor' needs user_injection = 'prefix'"),
    ({"generation_user_guidance": -1.0}, r"generation_user_guidance = -1.0 \(expected a number >= 0"),
    ({"generation_guidance_contrast": "none"}, "expected 'anchor' or 'batch_mean'"),
])
def test_bad_guidance_settings_are_named(tiny_creative_data, overrides, message):
    with pytest.raises(ConfigValueError, match=message):
        build(tiny_creative_data, **overrides)


@pytest.mark.parametrize("overrides,reason", [
    ({"generation_do_sample": True}, "decoding samples"),
    ({"use_user_embedding": False}, "no U reaches the creative LLM"),
])
def test_guidance_is_off_with_a_warning_where_it_cannot_apply(tiny_creative_data, overrides, reason, caplog):
    """On by default, guidance must not turn the ablation (no U) or sampled decoding into a config error."""
    with caplog.at_level(logging.WARNING):
        model = build(tiny_creative_data, generation_user_guidance=0.5, **overrides)
    assert model.decoding_settings["user_guidance"] == 0.0
    assert f"generation_user_guidance = 0.5 is off for this run" in caplog.text and reason in caplog.text
