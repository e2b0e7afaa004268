"""Each RecBole compatibility fix, with the failure it prevents shown alongside."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from recbole_hllm import compat

from conftest import subprocess_env


def _python(code: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=subprocess_env(tmp_path), timeout=120)


def test_numpy_aliases_restored_only_when_missing(monkeypatch):
    monkeypatch.delattr(np, "float_", raising=False)
    with pytest.raises(AttributeError):
        np.float_  # noqa: B018  (numpy 2 removed it: RecBole's Config would die here)
    restored = compat.restore_numpy_aliases()
    assert "float_" in restored and np.float_ is np.float64
    assert "float_" not in compat.restore_numpy_aliases()  # nothing re-done
    from recbole.config.configurator import Config

    Config.compatibility_settings(None)  # RecBole's own alias code now runs
    assert np.float is np.float64


def test_anomaly_mode_left_off(tmp_path):
    without = _python("import torch, recbole.model.sequential_recommender; print(torch.is_anomaly_enabled())", tmp_path)
    assert without.stdout.strip() == "True"  # RecBole's SINE import switches it on
    with_fix = _python("import torch, recbole_hllm; print(torch.is_anomaly_enabled())", tmp_path)
    assert with_fix.stdout.strip() == "False", with_fix.stderr[-2000:]


def test_user_choice_of_anomaly_mode_is_kept(tmp_path):
    out = _python("import torch; torch.autograd.set_detect_anomaly(True); import recbole_hllm; "
                  "print(torch.is_anomaly_enabled())", tmp_path)
    assert out.stdout.strip() == "True", out.stderr[-2000:]


BROKEN_RAY = "import sys; sys.modules['pkg_resources'] = None\n"


def test_quick_start_imports_when_ray_is_broken(tmp_path):
    without = _python(BROKEN_RAY + "import recbole.quick_start", tmp_path)
    assert without.returncode != 0 and ("pkg_resources" in without.stderr or "ray" in without.stderr)
    code = BROKEN_RAY + (
        "import recbole_hllm\n"
        "from recbole.quick_start import run_recbole, load_data_and_model\n"
        "from recbole.quick_start.quick_start import tune\n"
        "try:\n    tune.report(x=1)\nexcept ImportError as e:\n    print('CLEAR:', e)\n"
        "try:\n    import ray\nexcept ImportError as e:\n    print('RAY STILL FAILS')\n"
    )
    out = _python(code, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "CLEAR: ray.tune.report is needed for RecBole's hyper-parameter tuning" in out.stdout
    assert "RAY STILL FAILS" in out.stdout


def test_torch_load_relaxed_only_for_recbole_checkpoints(tmp_path):
    import recbole.quick_start
    import recbole.trainer.trainer as trainer_module
    from recbole.config import Config

    path, other = tmp_path / "ckpt.pth", tmp_path / "other.pth"
    state = {"config": Config(model="HLLM", dataset="ml-100k", config_dict={"state": "ERROR"}), "state_dict": {}}
    torch.save(state, path)
    torch.save(state, other)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path)  # the process-wide default stays safe
    assert trainer_module.torch.load(path)["config"]["model"] == "HLLM"  # RecBole's trainer may
    assert trainer_module.torch.tensor is torch.tensor  # everything else is torch itself

    seen = {}

    def fake_original(model_file):  # stands for RecBole's body: it calls torch.load itself
        seen["own"] = torch.load(model_file)["config"]["model"]
        with pytest.raises(Exception, match="Weights only load failed"):
            torch.load(other)  # any other file inside the call stays safe
        return "ok"

    assert recbole.quick_start.load_data_and_model._recbole_hllm  # installed
    wrapped = compat.relax_load_of_given_file(fake_original)
    assert wrapped(str(path)) == "ok" and seen["own"] == "HLLM"
    assert torch.load.__module__ == "torch.serialization"  # restored after the call


def test_flops_skipped_for_plugin_models_only():
    import logging

    import recbole.quick_start.quick_start as qs
    import recbole.utils

    from recbole_hllm.registry import REGISTRY, is_plugin_model

    assert qs.get_flops.__wrapped__ is recbole.utils.get_flops  # installed where run_recbole looks
    calls = []
    counter = compat.flops_counter_skipping(is_plugin_model, lambda *a: calls.append(a) or 7)
    plugin_model = object.__new__(REGISTRY["HLLM"].model_class)
    assert counter(plugin_model, None, "cpu", logging.getLogger(), None) == 0
    assert calls == []  # no deep copy, no thop forward
    assert counter(object(), None, "cpu", logging.getLogger(), None) == 7  # others: RecBole's count
    assert len(calls) == 1


def test_ce_loss_models_get_no_training_negatives_by_default(tiny_data):
    from recbole.config import Config

    base = {"data_path": str(tiny_data), "state": "ERROR"}
    config = Config(model="SASRec", dataset="tiny", config_dict=base)  # stock RecBole raises here
    assert config["train_neg_sample_args"]["distribution"] == "none"
    explicit = {**base, "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}}
    with pytest.raises(ValueError, match="should be None when the loss_type is CE"):
        Config(model="SASRec", dataset="tiny", config_dict=explicit)  # the user's choice is kept
    bpr = Config(model="GRU4Rec", dataset="tiny", config_dict={**base, "loss_type": "BPR"})
    assert bpr["train_neg_sample_args"]["sample_num"] == 1  # pairwise models keep their negatives
