"""Greedy decoding that drops ended rows (backbones/greedy.py, generation_drop_finished_rows)
and the generation attention kernel (generation_attention)."""
import pytest
import torch

from recbole_hllm.model.creative_llm import attention_of
from recbole_hllm.model.hllm_creator import HLLMCreator

from conftest import build_model, tiny_creator_config, write_tiny_dataset

STEPS = 8


@pytest.fixture(scope="module", params=["prefix", "soft_token"])
def model(tmp_path_factory, request):
    """A tiny HLLMCreator whose U enters as a per-layer prefix (a pre-filled cache per row) or
    as a soft token (the prompt text before it shared by the batch as one cache)."""
    root = tmp_path_factory.mktemp("greedy")
    with pytest.MonkeyPatch.context() as patch:  # RecBole writes log/ under the working directory
        patch.chdir(root)
        patch.setenv("RECBOLE_HLLM_CACHE", str(root / "cache"))
        write_tiny_dataset(root / "data", creative=True)
        config = tiny_creator_config(root / "data", user_prefix_init_std=0.5, generation_max_new_tokens=STEPS,
                                     creative_llm_attention="eager", generation_attention="sdpa",
                                     user_injection=request.param)
        model, _, _, _ = build_model(HLLMCreator, config)
        yield model.eval()


def _prompts(model, users: int):
    """Prompt parts of ``users`` rows of different lengths (left padding) and their conditions."""
    before, after = model._prompt_parts(model.template, list(range(1, users + 1)))
    after[1] = after[1] + model.creative.token_ids(["a much longer ad text"])[0]
    vecs = torch.randn(users, model.user_encoder.hidden_size, generator=torch.Generator().manual_seed(3))
    vecs = vecs.to(model.device)
    return before, after, model.user_condition(vecs), model.contrast_condition(vecs, "batch_mean")


def _with_row_ends(model, before, after, own, **decoding):
    """Pick as EOS a token that some rows write early and others never write, so those
    rows end while the others go on (a random tiny model rarely writes its real EOS)."""
    creative = model.creative
    creative.drop_finished_rows = False
    ids = creative.generate_ids(before, own, after, STEPS, **decoding)
    for token in ids[:, 1:4].flatten().tolist():
        ends = (ids[:, : STEPS - 1] == token).any(dim=1)
        if 0 < int(ends.sum()) < len(ids):
            return token
    pytest.fail(f"no token ends some rows but not all in {ids.tolist()}")


@pytest.mark.exact_numerics
@pytest.mark.parametrize("guidance", [0.0, 1.5])
def test_dropping_ended_rows_decodes_the_tokens_generate_decodes(model, guidance, monkeypatch):
    """The same ids as transformers' generate, with and without guidance on U, while the
    rows that ended leave the batch: later forwards run on fewer rows."""
    creative = model.creative
    before, after, own, contrast = _prompts(model, 4)
    decoding = dict(user_guidance=guidance, contrast=contrast) if guidance else {}
    monkeypatch.setattr(creative, "eos_id", _with_row_ends(model, before, after, own, **decoding))
    creative.drop_finished_rows = False
    expected = creative.generate_ids(before, own, after, STEPS, **decoding)
    rows_per_forward = []
    hook = creative.llm.register_forward_pre_hook(
        lambda module, args, kwargs: rows_per_forward.append(
            len(kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs["inputs_embeds"])),
        with_kwargs=True)
    try:
        creative.drop_finished_rows = True
        dropped = creative.generate_ids(before, own, after, STEPS, **decoding)
    finally:
        hook.remove()
    assert torch.equal(dropped, expected)
    assert (expected == creative.tokenizer.pad_token_id).any()  # a row ended early: padded after its EOS
    pairs = 2 if guidance else 1
    # (a shared prompt is first encoded once, on one row) the batch starts whole, then the ended rows leave
    assert max(rows_per_forward) == 4 * pairs and rows_per_forward[-1] < 4 * pairs


def test_generation_runs_in_its_own_attention_kernel_and_training_in_the_other(model, monkeypatch):
    """creative_llm_attention: eager trains; generation_attention: sdpa decodes, and the
    training kernel is back afterwards, also when decoding fails."""
    creative = model.creative
    assert attention_of(creative.llm) == "eager"
    before, after, own, _ = _prompts(model, 2)
    seen = []
    hook = creative.llm.register_forward_pre_hook(lambda *_: seen.append(attention_of(creative.llm)))
    try:
        creative.generate_ids(before, own, after, 2)
    finally:
        hook.remove()
    assert seen and set(seen) == {"sdpa"} and attention_of(creative.llm) == "eager"
    monkeypatch.setattr(creative, "_generate_ids", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        creative.generate_ids(before, own, after, 2)
    assert attention_of(creative.llm) == "eager"


def test_unknown_generation_kernel_is_named(tiny_creative_data):
    with pytest.raises(ValueError, match=r"generation_attention = 'flash' \(expected 'sdpa' or 'eager'"):
        build_model(HLLMCreator, tiny_creator_config(tiny_creative_data, generation_attention="flash"))
