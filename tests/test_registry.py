"""Registration: names resolve everywhere RecBole looks them up; yaml precedence."""
import sys
import textwrap

import pytest
from recbole.config import Config
from recbole.utils import get_model, get_trainer

import recbole_hllm
from recbole_hllm.integration import registry


def test_get_model_resolves_plugin_and_builtin_models():
    assert get_model("HLLM") is recbole_hllm.HLLM
    assert get_model("SASRec").__name__ == "SASRec"
    import recbole.utils.utils

    assert recbole.utils.utils.get_model("HLLM") is recbole_hllm.HLLM
    # RecBole's own lookup convention (find_spec on recbole.model.<kind>.<name>) also works
    assert recbole.utils.utils.get_model.__wrapped__("HLLM") is recbole_hllm.HLLM


def test_unknown_model_lists_both_model_sets():
    with pytest.raises(ValueError) as err:
        get_model("NoSuchModel")
    message = str(err.value)
    assert "'NoSuchModel'" in message and "HLLM" in message and "SASRec" in message
    assert "No module named" not in message  # not RecBole's lightgbm ImportError


def test_trainer_and_dataset_classes_registered():
    import recbole.data.dataset as ds

    from recbole_hllm.data.dataset import HLLMDataset

    assert ds.HLLMDataset is HLLMDataset
    # HLLM's trainer is RecBole's Trainer made exact in multi-process runs
    from recbole.trainer import Trainer

    trainer = get_trainer(recbole_hllm.HLLM.type, "HLLM")
    assert trainer.__name__ == "HLLMTrainer" and issubclass(trainer, Trainer)


def test_yaml_precedence_model_then_dataset_then_user(tiny_data):
    # model yaml sets text_fields: [title]; the plugin's ml-100k yaml overrides it
    config = Config(model="HLLM", dataset="ml-100k", config_dict={"state": "ERROR"})
    assert config["user_llm"] == "smollm2"  # from properties/model/HLLM.yaml
    assert config["text_fields"] == ["movie_title", "release_year", "class"]  # dataset yaml wins
    assert config["topk"] == [10, 20]
    config = Config(model="HLLM", dataset="ml-100k", config_dict={"text_fields": ["class"], "state": "ERROR"})
    assert config["text_fields"] == ["class"]  # the user wins over both
    config = Config(model="HLLM", dataset="tiny", config_dict={"data_path": str(tiny_data), "state": "ERROR"})
    assert config["text_fields"] == ["title"]  # no dataset yaml: the model default


def test_properties_found():
    from recbole_hllm.config import properties_dir

    props = properties_dir()
    assert (props / "model" / "HLLM.yaml").is_file()


def test_entry_point_plugins_are_loaded(tmp_path, monkeypatch):
    """A third-party package registers a model through the entry-point group."""
    site = tmp_path / "site"
    (site / "toy_plugin").mkdir(parents=True)
    (site / "toy_plugin" / "__init__.py").write_text(textwrap.dedent("""
        from recbole.model.sequential_recommender.sasrec import SASRec
        from recbole_hllm.integration.registry import register_model

        class ToySASRec(SASRec):
            pass

        def register():
            register_model(ToySASRec)
    """))
    dist = site / "toy_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\ntoy = toy_plugin:register\n")
    monkeypatch.syspath_prepend(str(site))
    try:
        assert "toy" in registry.load_entry_points()
        assert get_model("ToySASRec").__name__ == "ToySASRec"
    finally:
        registry.REGISTRY.pop("ToySASRec", None)
        sys.modules.pop("recbole.model.sequential_recommender.toysasrec", None)


def test_hllm_creator_yaml_extends_hllm_and_finds_shipped_dataset():
    config = Config(model="HLLMCreator", dataset="ads-synth", config_dict={"state": "ERROR"})
    assert config["user_llm"] == "smollm2" and config["item_llm"] == "minilm"  # from HLLM.yaml (_base_)
    assert config["creative_llm"] == "smollm2"  # its own yaml
    assert "_base_" not in config.final_config_dict
    assert config["data_path"].endswith("ads-synth") and (
        __import__("pathlib").Path(config["data_path"]) / "ads-synth.creative").is_file()
    assert config["text_fields"] == ["title", "description"]  # the dataset yaml
