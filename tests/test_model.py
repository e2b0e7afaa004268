"""HLLM components on tiny random models."""

import pytest
import torch

from recbole_hllm.model.hllm import HLLM, next_item_targets
from recbole_hllm.model.losses import full_softmax, sampled_infonce

from conftest import build_model, tiny_config


def build(data_root, **overrides):
    return build_model(HLLM, tiny_config(data_root, **overrides))[:3]


def test_next_item_targets():
    seq = torch.tensor([[5, 6, 7, 0], [9, 0, 0, 0]])
    targets = next_item_targets(seq, torch.tensor([3, 1]), torch.tensor([8, 4]))
    assert targets.tolist() == [[6, 7, 8, 0], [4, 0, 0, 0]]


def test_infonce_masks_the_positive_and_near_duplicates():
    torch.manual_seed(0)
    pred, pos = torch.randn(3, 8), torch.randn(3, 8)
    negs = torch.cat([pos[:1].clone(), torch.randn(2, 8)])  # negative 0 duplicates positive 0
    pos_ids, neg_ids = torch.tensor([1, 2, 3]), torch.tensor([50, 2, 60])  # negative 1 IS positive 1
    scale = torch.tensor(10.0, requires_grad=True)
    loss = sampled_infonce(pred, pos, pos_ids, negs, neg_ids, scale, 0.99).mean()
    loss.backward()
    assert torch.isfinite(scale.grad)
    n = torch.nn.functional.normalize
    logits = n(pred) @ n(torch.cat([pos, negs])).T * 10.0
    manual = []
    for row in range(3):
        keep = [True, row != 0, row != 1, True]  # masks: near-duplicate for row 0, same id for row 1
        cand = torch.cat([logits[row, row:row + 1], logits[row, 3:]])[torch.tensor(keep)]
        manual.append(-torch.log_softmax(cand, 0)[0])
    assert torch.allclose(loss, torch.stack(manual).mean(), atol=1e-5)


def test_full_softmax_excludes_padding_item():
    table = torch.randn(5, 4)
    table[0] = table[2]  # padding row identical to the target must not compete
    loss = full_softmax(table[2:3].clone(), table, torch.tensor([2]), torch.tensor(5.0)).mean()
    logits = torch.nn.functional.normalize(table[2:3], dim=-1) @ torch.nn.functional.normalize(table[1:], dim=-1).T * 5
    assert torch.allclose(loss, -torch.log_softmax(logits[0], 0)[1])


def test_item_embedding_does_not_depend_on_batch_padding(tiny_data):
    model, _, _ = build(tiny_data, item_llm_tuning="full")
    model.eval()
    with torch.no_grad():
        alone = model.item_encoder(torch.tensor([3], device=model.device))
        batched = model.item_encoder(torch.tensor([3, 1, 7, 12], device=model.device))
    atol = 1e-5 if model.item_encoder.dtype == torch.float32 else 3e-2  # bf16 on CUDA
    assert torch.allclose(alone[0], batched[0], atol=atol)


def test_item_token_sits_right_after_the_text(tiny_data):
    model, _, _ = build(tiny_data, item_llm_tuning="full")
    encoder = model.item_encoder
    seen = {}
    handle = encoder.llm.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
    encoder(torch.tensor([4, 9], device=model.device))
    handle.remove()
    lengths = encoder.text_lengths[torch.tensor([4, 9], device=model.device)]
    embeds, mask = seen["inputs_embeds"], seen["attention_mask"]
    for row, length in enumerate(lengths.tolist()):
        assert torch.equal(embeds[row, length], encoder.item_token.detach().to(embeds.dtype))
        assert mask[row, : length + 1].all() and not mask[row, length + 1:].any()


def test_frozen_item_llm_cached_on_disk_and_not_reloaded(tiny_data, monkeypatch):
    model, train, _ = build(tiny_data)
    table = model.item_encoder.all_items()
    cached = list((tiny_data.parent / "cache" / "item_embeddings").glob("*.pt"))
    assert len(cached) == 1
    import recbole_hllm.model.item_encoder as ie

    monkeypatch.setattr(ie, "load_backbone", lambda *a, **k: pytest.fail("item LLM loaded on a cache hit"))
    again, _, _ = build(tiny_data)
    assert torch.equal(again.item_encoder.all_items(), table)
    assert not any("item_encoder.llm" in k for k in again.state_dict())  # frozen LLM not checkpointed


def test_cache_key_changes_with_text_settings(tiny_data):
    a, _, _ = build(tiny_data)
    b, _, _ = build(tiny_data, item_text_max_len=3)
    assert a.item_encoder._cache_path() != b.item_encoder._cache_path()


@pytest.mark.parametrize("tuning", ["frozen", "lora", "full"])
def test_loss_trains_exactly_the_tuned_parameters(tiny_data, tuning):
    model, train, _ = build(tiny_data, item_llm_tuning=tuning, user_llm_tuning=tuning)
    batch = next(iter(train)).to(model.device)
    loss = model.calculate_loss(batch)
    loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "logit_scale.log_scale" in with_grad and "user_encoder.item_to_user.weight" in with_grad
    if tuning == "frozen":
        assert not any(".llm." in n for n in trainable)
    elif tuning == "lora":
        assert {n for n in trainable if ".llm." in n} and all("lora_" in n for n in trainable if ".llm." in n)
        assert any("item_encoder.llm" in n and "lora_" in n for n in with_grad)
    else:
        assert any("item_encoder.llm" in n for n in with_grad) and "item_encoder.item_token" in with_grad
    assert with_grad <= trainable


def test_full_softmax_needs_frozen_item_llm(tiny_data):
    from recbole_hllm.config import ConfigValueError

    with pytest.raises(ConfigValueError, match="full_softmax' needs item_llm_tuning = 'frozen'"):
        build(tiny_data, hllm_loss="full_softmax", item_llm_tuning="full")


def test_predict_matches_full_sort_and_dedupes_histories(tiny_data):
    model, _, valid = build(tiny_data)
    model.eval()
    batch = next(iter(valid))[0].to(model.device)
    calls = []
    handle = model.user_encoder.register_forward_hook(lambda m, a, out: calls.append(out.shape[0]))
    with torch.no_grad():
        full = model.full_sort_predict(batch)  # [B, n_items]
        repeated = batch.repeat_interleave(3)
        repeated.update(type(batch)({"item_id": torch.tensor([1, 2, 3] * len(batch), device=model.device)}))
        scores = model.predict(repeated)
    handle.remove()
    assert calls[1] == calls[0]  # 3 candidates per user, one user-LLM row per user
    expected = full[torch.arange(len(batch)).repeat_interleave(3), torch.tensor([1, 2, 3] * len(batch))].to(scores)
    assert torch.allclose(scores, expected, atol=1e-5)


def test_layer_truncation(tiny_data):
    model, _, _ = build(tiny_data, user_llm_layers=1)
    assert len(model.user_encoder.llm.layers) == 1


def test_model_path_that_does_not_exist(tiny_data):
    with pytest.raises(FileNotFoundError, match=r"user_llm = '/no/such/model'.*embedded default .*smollm2.*minilm"):
        build(tiny_data, user_llm="/no/such/model")


def test_torch_threads_applied(tiny_data):
    before = torch.get_num_threads()
    try:
        build(tiny_data, torch_threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
