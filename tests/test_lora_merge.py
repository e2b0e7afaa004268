"""Decoding with merged LoRA weights (generation_merge_lora, backbones/lora_merge.py)."""
import pytest
import torch

from recbole_hllm.backbones.lora_merge import lora_layers, merged_lora
from recbole_hllm.model.hllm_creator import HLLMCreator

from conftest import build_model, tiny_creator_config, write_tiny_dataset


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny HLLMCreator whose creative LLM is LoRA-tuned, with non-zero LoRA B matrices
    (at init B = 0 and a merge would change nothing)."""
    root = tmp_path_factory.mktemp("lora_merge")
    with pytest.MonkeyPatch.context() as patch:  # RecBole writes log/ under the working directory
        patch.chdir(root)
        patch.setenv("RECBOLE_HLLM_CACHE", str(root / "cache"))
        write_tiny_dataset(root / "data", creative=True)
        config = tiny_creator_config(root / "data", creative_llm_tuning="lora", user_prefix_init_std=0.5,
                                     creative_llm_lora={"r": 4, "lora_alpha": 8, "target_modules": "all-linear"})
        model, _, _, _ = build_model(HLLMCreator, config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in lora_layers(model.creative.llm):
            for b in layer.lora_B.values():
                b.weight.copy_(torch.randn(b.weight.shape, generator=generator) * 0.2)
    return model.eval()


def _base_weights(llm) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in llm.named_parameters() if "lora_" not in name}


def test_merged_lora_merges_inside_and_restores_every_weight_bit_for_bit(model):
    llm = model.creative.llm
    before = _base_weights(llm)
    layers = lora_layers(llm)
    assert layers, "the tiny creative LLM has LoRA layers"
    with merged_lora(llm) as merged:
        assert merged == len(layers) and all(layer.merged for layer in layers)
        changed = [n for n, p in _base_weights(llm).items() if not torch.equal(p, before[n])]
        assert changed  # the deltas are in the base weights now
    after = _base_weights(llm)
    assert all(torch.equal(after[n], before[n]) for n in before)  # exact, not W + d - d
    assert not any(layer.merged for layer in layers) and lora_layers(llm) == layers


def test_layers_without_a_delta_are_not_merged(model):
    layers = lora_layers(model.creative.llm)
    layer = layers[0]
    saved = layer.lora_B.default.weight.detach().clone()
    with torch.no_grad():
        layer.lora_B.default.weight.zero_()  # B = 0, as in the frozen layers below creative_tuned_layers
    try:
        with merged_lora(model.creative.llm) as merged:
            assert merged == len(layers) - 1 and not layer.merged
    finally:
        with torch.no_grad():
            layer.lora_B.default.weight.copy_(saved)


def test_merged_lora_restores_the_weights_when_the_block_raises(model):
    llm = model.creative.llm
    before = _base_weights(llm)
    with pytest.raises(RuntimeError, match="stop"):
        with merged_lora(llm):
            raise RuntimeError("stop")
    assert all(torch.equal(p, before[n]) for n, p in _base_weights(llm).items())
    with merged_lora(llm, enabled=False) as merged:
        assert merged == 0 and not any(layer.merged for layer in lora_layers(llm))


@pytest.mark.exact_numerics
def test_generation_with_merged_lora_writes_the_titles_of_the_unmerged_model(model):
    creative = model.creative
    assert creative.merge_lora  # the yaml default
    users = torch.randn(4, model.user_encoder.hidden_size, generator=torch.Generator().manual_seed(1))
    before, after = model._prompt_parts(model.template, [1, 2, 3, 4])
    condition = model.user_condition(users.to(model.device))
    merged = creative.generate_ids(before, condition, after, 6)
    creative.merge_lora = False
    try:
        unmerged = creative.generate_ids(before, condition, after, 6)
    finally:
        creative.merge_lora = True
    assert torch.equal(merged, unmerged)
    # the merged run really used merged layers: the forward of a merged layer skips the LoRA branch
    calls = []
    hook = lora_layers(creative.llm)[0].lora_A.default.register_forward_hook(lambda *a: calls.append(1))
    try:
        creative.generate_ids(before, condition, after, 2)
        assert calls == []
        creative.merge_lora = False
        creative.generate_ids(before, condition, after, 2)
        assert calls
    finally:
        hook.remove()
        creative.merge_lora = True


def test_a_pass_of_several_batches_merges_each_layer_once(model, monkeypatch):
    """Merging costs seconds on the real model: generate_titles merges once around all its batches
    (the per-batch merge inside generate_ids then finds the layers merged and does nothing)."""
    from peft.tuners.lora.layer import Linear

    merges = []
    original = Linear.merge
    monkeypatch.setattr(Linear, "merge", lambda self, *a, **k: merges.append(self) or original(self, *a, **k))
    layers = lora_layers(model.creative.llm)
    rows = 3 * model.generation["batch_size"] - 1  # three batches
    item_seq = torch.randint(1, 10, (rows, 5), generator=torch.Generator().manual_seed(2)).to(model.device)
    seq_len = torch.full((rows,), 5, device=model.device)
    items = torch.arange(1, rows + 1, device=model.device) % 20 + 1
    before = _base_weights(model.creative.llm)
    titles, _ = model.generate_titles(item_seq, seq_len, items)
    assert len(titles) == rows and all(t is not None for t in titles)
    assert len(merges) == len(layers) and len(set(map(id, merges))) == len(layers)
    assert all(torch.equal(p, before[n]) for n, p in _base_weights(model.creative.llm).items())
    assert not any(layer.merged for layer in layers)
