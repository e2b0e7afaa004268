"""Each RecBole compatibility fix, with the failure it prevents shown alongside."""

import numpy as np
import pytest
import torch

from recbole_hllm.integration import compat

from conftest import run_python as _python


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
    with_fix = _python("import torch, recbole_hllm, recbole.model.sequential_recommender; "
                       "print(torch.is_anomaly_enabled())", tmp_path)
    assert with_fix.stdout.strip() == "False", with_fix.stderr[-2000:]


def test_user_choice_of_anomaly_mode_is_kept(tmp_path):
    out = _python("import torch; torch.autograd.set_detect_anomaly(True); import recbole_hllm; "
                  "import recbole.model.sequential_recommender; print(torch.is_anomaly_enabled())", tmp_path)
    assert out.stdout.strip() == "True", out.stderr[-2000:]


BROKEN_RAY = "import sys; sys.modules['pkg_resources'] = None\n"


def test_quick_start_imports_when_ray_is_broken(tmp_path):
    without = _python(BROKEN_RAY + "import recbole.quick_start", tmp_path)
    assert without.returncode != 0 and ("pkg_resources" in without.stderr or "ray" in without.stderr)
    code = BROKEN_RAY + (
        "import recbole_hllm\n"
        "from recbole.quick_start import run_recbole, load_data_and_model\n"
        "from recbole.quick_start.quick_start import tune\n"
        "print('REPORT', tune.report(x=1))\n"  # what objective_function calls after every hyperopt trial
        "try:\n    tune.run()\nexcept ImportError as e:\n    print('CLEAR:', e)\n"
        "try:\n    import ray\nexcept ImportError as e:\n    print('RAY STILL FAILS')\n"
    )
    out = _python(code, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "REPORT None" in out.stdout
    assert "CLEAR: ray.tune.run is needed for RecBole's hyper-parameter tuning" in out.stdout
    assert "RAY STILL FAILS" in out.stdout
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

    from recbole_hllm.integration.registry import REGISTRY, is_plugin_model

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


# -- hyperopt's exhaustive search (RecBole's default tuning algorithm) ------------------------------------
def _tuner(objective):
    from recbole.trainer import HyperTuning

    return HyperTuning(objective, algo="exhaustive", params_dict={"choice": {"learning_rate": [0.01, 0.001], "seed": [1, 2]}},
                       early_stop=10)


def _fake_objective(seen):
    def objective(config_dict, config_file_list):
        seen.append(dict(config_dict))
        return {"model": "M", "best_valid_score": config_dict["learning_rate"], "valid_score_bigger": True,
                "best_valid_result": {}, "test_result": {}}
    return objective


def test_exhaustive_search_runs_every_combination_on_numpy_2(monkeypatch):
    import recbole.trainer.hyper_tuning as hyper_tuning

    seen = []
    tuner = _tuner(_fake_objective(seen))
    tuner.run()
    assert sorted((c["learning_rate"], c["seed"]) for c in seen) == [(0.001, 1), (0.001, 2), (0.01, 1), (0.01, 2)]
    assert tuner.best_params["learning_rate"] == 0.01
    monkeypatch.setattr(hyper_tuning, "np", np)  # RecBole's module as shipped
    with pytest.raises(AttributeError, match="RandomState' object has no attribute 'integers'"):
        _tuner(_fake_objective([])).run()


# -- data errors RecBole reports without saying what is wrong ------------------------------------------------
def test_undecodable_item_file_names_file_line_and_byte(tiny_data):
    from recbole.config import Config
    from recbole.data import create_dataset

    from conftest import tiny_config

    item_file = tiny_data / "tiny" / "tiny.item"
    lines = item_file.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"story", b"st\xe9ry")  # latin-1 e-acute
    item_file.write_bytes(b"\n".join(lines))
    config = Config(model="HLLM", dataset="tiny", config_dict=tiny_config(tiny_data))
    with pytest.raises(compat.AtomicFileEncodingError, match=r"tiny\.item: line 4, column \d+: byte 0xe9 is not valid "
                                                             r"utf-8 text.*encoding: latin-1"):
        create_dataset(config)
    config = Config(model="HLLM", dataset="tiny", config_dict=tiny_config(tiny_data, encoding="latin-1"))
    assert create_dataset(config).item_num > 1  # the key it names reads the file


def test_sequential_model_without_time_field_says_what_to_add(tiny_data):
    from recbole.config import Config
    from recbole.data import create_dataset

    from conftest import tiny_config

    inter = tiny_data / "tiny" / "tiny.inter"
    rows = [line.split("\t")[:2] for line in inter.read_text().splitlines()]
    inter.write_text("\n".join("\t".join(r) for r in rows) + "\n")
    for model, overrides in (("SASRec", {"load_col": None}), ("HLLM", {})):
        config = Config(model=model, dataset="tiny", config_dict=tiny_config(tiny_data, **overrides))
        with pytest.raises(compat.MissingTimeFieldError, match=r"is a sequential model: it orders each user's "
                                                                r"interactions by time, but tiny.inter has no time "
                                                                r"field 'timestamp'. Add a column 'timestamp:float'"):
            create_dataset(config).build()  # data_preparation's split, where RecBole sorts by time


# -- RecBole's pandas FutureWarnings ---------------------------------------------------------------------
def test_recbole_pandas_warnings_are_silenced_and_others_still_show(tiny_data):
    import warnings

    from recbole.config import Config
    from recbole.data import create_dataset

    from conftest import tiny_config

    config = Config(model="HLLM", dataset="tiny", config_dict=tiny_config(tiny_data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()  # pytest's own filters off: only ours
        warnings.simplefilter("always")
        compat.silence_recbole_pandas_warnings()
        create_dataset(config)
        for message in compat.RECBOLE_PANDAS_WARNINGS:  # the same text from elsewhere still shows
            warnings.warn_explicit(message, FutureWarning, "other.py", 1, module="other")
        warnings.warn_explicit("another pandas change", FutureWarning, "dataset.py", 1,
                               module="recbole.data.dataset.dataset")
    future = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert sorted(future) == sorted([*compat.RECBOLE_PANDAS_WARNINGS, "another pandas change"])
    with warnings.catch_warnings(record=True) as unfixed:  # the same load without the fix warns
        warnings.resetwarnings()
        warnings.simplefilter("always")
        create_dataset(config)
    assert any(compat.RECBOLE_PANDAS_WARNINGS[0] in str(w.message) for w in unfixed)


# -- the tables of fixes -----------------------------------------------------------------------------------
def test_every_fix_names_a_test_that_exists_and_is_applied_once():
    from pathlib import Path

    from recbole_hllm.integration import distributed_fixes

    fixes = compat.FIXES + distributed_fixes.FIXES
    assert len({fix.name for fix in fixes}) == len(fixes)
    for fix in fixes:
        path, _, name = fix.test.partition("::")
        assert f"\ndef {name}(" in (Path(__file__).resolve().parents[1] / path).read_text(), fix.name
        assert fix.why and callable(fix.apply)
    assert compat.apply_all() == {} and distributed_fixes.apply_all() == {}  # import recbole_hllm applied them


def test_one_wrapper_of_set_default_parameters_runs_every_step():
    from recbole.config import Config

    from recbole_hllm.integration import patching, registry

    wrapper = Config._set_default_parameters
    assert patching.is_ours(wrapper) and not patching.is_ours(wrapper.__wrapped__)
    assert patching._DEFAULT_STEPS == [compat._no_negatives_for_ce_loss, registry._use_shipped_dataset]
    patching.before_default_parameters(compat._no_negatives_for_ce_loss)  # again: nothing changes
    assert Config._set_default_parameters is wrapper and len(patching._DEFAULT_STEPS) == 2
