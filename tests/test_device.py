"""A built model lives on one device, keeps every tensor as a parameter or buffer, and
trains float32 weights under a lower compute precision.

The device checks run on the CPU by building the models for PyTorch's ``meta`` device:
whatever construction leaves on the CPU instead of ``config["device"]`` shows up as a
second device, as it would on CUDA (where it fails with "indices should be either on
cpu or on the same device as the indexed tensor").
"""
import pytest
import torch
from torch import nn

from conftest import TEST_DEVICE, tiny_config, tiny_creator_config


def _build_on(device: str, model_name: str, config_dict: dict):
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, init_seed

    config = Config(model=model_name, dataset="tiny", config_dict=config_dict)
    init_seed(config["seed"], True)
    train, _, _ = data_preparation(config, create_dataset(config))
    config["device"] = torch.device(device)
    return get_model(model_name)(config, train._dataset)


def _stray_tensors(model: nn.Module) -> list[str]:
    """Tensors a module keeps as plain attributes (outside ``_parameters``/``_buffers``):
    ``.to()`` never moves them."""
    return [f"{name}.{attr}" for name, module in model.named_modules() for attr, value in vars(module).items()
            if isinstance(value, torch.Tensor)]


CASES = {
    "HLLM": lambda data: ("HLLM", tiny_config(data)),
    "HLLM-trained-top": lambda data: ("HLLM", tiny_config(data, item_llm_tuning="full", item_llm_trained_layers=1)),
    "HLLM-trained-top-recomputed": lambda data: ("HLLM", tiny_config(data, item_llm_tuning="lora",
                                                                     item_llm_trained_layers=1,
                                                                     item_lower_cache=False)),
    "HLLMCreator": lambda data: ("HLLMCreator", tiny_creator_config(data)),
}


@pytest.mark.parametrize("case", CASES)
def test_a_built_model_is_on_one_device_with_no_stray_tensors(tiny_creative_data, case, monkeypatch):
    from recbole_hllm.model.creative_llm import CreativeLLM

    # two numbers HLLMCreator reads off the creative LLM's weights at construction: a meta
    # tensor has no values, so they are stood in for (their device is what matters here)
    monkeypatch.setattr(CreativeLLM, "mean_token_norm", lambda self: 1.0)
    monkeypatch.setattr(CreativeLLM, "text_kv", lambda self, text, tokens: torch.zeros(
        self.kv_geometry.layers, 2, self.kv_geometry.kv_heads, tokens, self.kv_geometry.head_dim,
        device=self.llm.device))
    model_name, config_dict = CASES[case](tiny_creative_data)
    model = _build_on("meta", model_name, config_dict)
    devices = {t.device.type for t in [*model.parameters(), *model.buffers()]}
    assert devices == {"meta"}, f"{case}: built across {devices}"
    assert _stray_tensors(model) == []


@pytest.mark.skipif(TEST_DEVICE == "cpu", reason="needs a second device: run the suite with --device cuda")
def test_public_methods_take_tensors_from_another_device(tiny_creative_data):
    """A model on the GPU reads inputs made on the CPU (user code, clustering centroids)."""
    model = _build_on(TEST_DEVICE, "HLLMCreator", tiny_creator_config(tiny_creative_data)).eval()
    seq, lengths, ads = torch.tensor([[1, 2, 3]]), torch.tensor([3]), torch.tensor([4])
    user_vec = model.user_embedding(seq, lengths)
    assert user_vec.device.type == TEST_DEVICE
    assert model.match_score(user_vec.cpu(), ads).device.type == TEST_DEVICE
    titles, _ = model.generate_from_user_vectors(user_vec.cpu(), [4], **model.decoding_settings)
    assert len(titles) == 1
    assert model.full_sort_predict({model.ITEM_SEQ: seq, model.ITEM_SEQ_LEN: lengths}).shape[0] == 1


def test_trainable_weights_stay_float32_and_compute_in_bf16(tiny_data, tmp_path):
    """user_llm_dtype: bfloat16 with full tuning: the checkpoint holds float32 trainable
    weights, and the user LLM's forward computes in bf16 (autocast)."""
    from recbole.quick_start import run_recbole

    import recbole_hllm.model.user_encoder as user_encoder

    seen = []
    original = user_encoder.UserEncoder.forward

    def spy(self, inputs_embeds, attention_mask):
        layer = self.llm.layers[0].mlp.down_proj
        handle = layer.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
        try:
            return original(self, inputs_embeds, attention_mask)
        finally:
            handle.remove()

    user_encoder.UserEncoder.forward = spy
    try:
        result = run_recbole(model="HLLM", dataset="tiny", config_dict=tiny_config(
            tiny_data, user_llm_dtype="bfloat16", user_llm_tuning="full", epochs=1))
    finally:
        user_encoder.UserEncoder.forward = original
    assert seen and set(seen) == {torch.bfloat16}, seen
    checkpoint = next((tmp_path / "data" / "saved").glob("HLLM-*.pth"))
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    user_weights = {k: v.dtype for k, v in state.items() if k.startswith("user_encoder.llm.layers.")}
    assert user_weights and set(user_weights.values()) == {torch.float32}
    assert result["test_result"]["ndcg@10"] >= 0
