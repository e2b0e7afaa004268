"""item_llm_trained_layers: the top N item-LLM layers train over the kept outputs of the
frozen layers below; the result is the same as recomputing those layers every step."""
import pytest
import torch

from conftest import TINY_LLAMA, build_model, tiny_config
from recbole_hllm.model.hllm import HLLM

TINY_BERT = {"model_type": "bert", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
             "num_attention_heads": 4, "max_position_embeddings": 64}
BACKBONES = {"llama": dict(TINY_LLAMA, num_hidden_layers=3), "bert": TINY_BERT}


def _build(data, backbone="llama", **overrides):
    settings = dict(item_llm_config=BACKBONES[backbone], item_llm_tuning="full", item_llm_trained_layers=1,
                    item_pooling="mean")
    settings.update(overrides)
    return build_model(HLLM, tiny_config(data, **settings))


def _batch(train, model):
    return next(iter(train)).to(model.device)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_gradients_reach_the_trained_layers_and_nothing_below(tiny_data, backbone):
    model, train, _, _ = _build(tiny_data, backbone)
    encoder = model.item_encoder
    lower = encoder._lower.module
    lower_before = {k: v.clone() for k, v in lower.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.calculate_loss(_batch(train, model)).backward()
    trained = [p for p in encoder.llm.parameters() if p.requires_grad]
    assert trained and all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained)
    assert encoder.item_token.grad is not None  # [ITEM] enters at the first trained layer
    assert not any(p.requires_grad for p in lower.parameters())
    optimizer.step()
    assert encoder.lower_states is not None  # kept for every item on first use
    assert all(torch.equal(lower.state_dict()[k], v) for k, v in lower_before.items())
    assert "item_encoder.lower_states" not in model.state_dict()  # never checkpointed


@pytest.mark.parametrize("backbone", BACKBONES)
def test_kept_lower_states_are_the_hidden_states_entering_the_first_trained_layer(tiny_data, backbone):
    """Checked against the whole frozen model's own ``output_hidden_states``."""
    import dataclasses

    from recbole_hllm.backbones.backbone import load_backbone

    model, _, _, _ = _build(tiny_data, backbone, item_llm_trained_layers=2)
    encoder = model.item_encoder
    encoder.all_items()
    whole, _ = load_backbone(dataclasses.replace(encoder.spec, tuning="frozen"), model.device)
    whole.eval()  # a randomly initialised BERT starts in training mode (dropout)
    tokens, lengths = encoder.text_tokens, encoder.text_lengths
    mask = (torch.arange(tokens.shape[1])[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        expected = whole(input_ids=tokens, attention_mask=mask, output_hidden_states=True).hidden_states[1]
    real = mask.bool()
    assert torch.allclose(encoder.lower_states[real], expected[real], atol=1e-5)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_kept_states_give_what_recomputing_the_lower_layers_gives(tiny_data, backbone):
    """Loss, gradients and item vectors, over two optimizer steps (the top layers move;
    the kept states must not go stale)."""
    runs = []
    for keep in (True, False):
        model, train, _, _ = _build(tiny_data, backbone, item_lower_cache=keep)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
        losses = []
        for batch in list(iter(train))[:2]:
            torch.manual_seed(0)  # the same sampled negatives in both runs
            loss = model.calculate_loss(batch.to(model.device))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.detach())
        with torch.no_grad():
            runs.append((torch.stack(losses), model.item_vectors(torch.arange(1, model.n_items))))
    assert torch.allclose(runs[0][0], runs[1][0], atol=1e-5)
    assert torch.allclose(runs[0][1], runs[1][1], atol=1e-5)


def test_all_layers_trained_this_way_equal_ordinary_full_tuning(tiny_data):
    """A decoder LLM reads inputs_embeds straight into its first layer: with every layer
    trained, the split model is the whole model (same weights, same item vectors)."""
    split, _, _, _ = _build(tiny_data, item_llm_trained_layers=3, item_pooling="item_token")
    whole, _, _, _ = _build(tiny_data, item_llm_trained_layers=None, item_pooling="item_token")
    ids = torch.arange(1, split.n_items)
    with torch.no_grad():
        assert torch.allclose(split.item_encoder(ids), whole.item_encoder(ids), atol=1e-5)


def test_a_checkpoint_restores_the_trained_layers_without_the_kept_states(tiny_data):
    model, train, _, _ = _build(tiny_data)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.calculate_loss(_batch(train, model)).backward()
    optimizer.step()
    fresh, _, _, _ = _build(tiny_data)
    fresh.load_state_dict(model.state_dict())
    ids = torch.arange(1, model.n_items)
    with torch.no_grad():
        assert torch.allclose(fresh.item_vectors(ids), model.item_vectors(ids), atol=1e-6)


def test_trained_layers_need_a_trained_item_llm(tiny_data):
    from recbole_hllm.config import ConfigValueError

    with pytest.raises(ConfigValueError, match="item_llm_trained_layers = 1"):
        build_model(HLLM, tiny_config(tiny_data, item_llm_tuning="frozen", item_llm_trained_layers=1))
    with pytest.raises(ValueError, match="item_llm_trained_layers = 9: the item LLM has 2 layers"):
        build_model(HLLM, tiny_config(tiny_data, item_llm_tuning="full", item_llm_trained_layers=9))


def test_chunked_encoding_with_checkpointing_changes_memory_not_results(tiny_data):
    """Length-sorted chunks (item_embed_batch_size) with activation checkpointing per
    chunk give the loss and gradients of one padded batch."""
    grads = []
    for settings in ({"item_embed_batch_size": 1000}, {"item_embed_batch_size": 4, "item_llm_checkpointing": True}):
        model, train, _, _ = _build(tiny_data, item_llm_trained_layers=None, **settings)
        torch.manual_seed(0)
        loss = model.calculate_loss(_batch(train, model))
        loss.backward()
        grads.append((loss.detach(), model.item_encoder.item_token.grad.clone()))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-5)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-5)


@pytest.mark.parametrize("trained_layers", [None, 1])
def test_hllm_creator_runs_a_trainable_item_llm_once_a_step(tiny_creative_data, trained_layers):
    """History, next-item targets, sampled negatives, the clicked ad and the matching
    negatives: one item-LLM pass over their union (the profiles of the align loss are
    other texts: with trained top layers they go through the lower layers first)."""
    from conftest import tiny_creator_config
    from recbole_hllm.model.hllm_creator import HLLMCreator

    model, train, _, _ = build_model(HLLMCreator, tiny_creator_config(
        tiny_creative_data, item_llm_tuning="full", item_llm_trained_layers=trained_layers))
    calls = []
    original = model.item_encoder._encode_in_chunks
    model.item_encoder._encode_in_chunks = lambda ids: calls.append(len(ids)) or original(ids)
    losses = model.calculate_loss(_batch(train, model))
    sum(losses).backward()
    assert len(calls) == 1
    assert model.item_encoder.item_token.grad is not None
