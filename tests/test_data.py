"""Item text alignment, sequence-level training rows and dataset errors."""
import pytest
from recbole.config import Config
from recbole.data import create_dataset

from recbole_hllm.config import ConfigValueError
from recbole_hllm.data.dataset import HLLMDataset
from recbole_hllm.data.item_text import ItemTextError, build_item_texts

from conftest import tiny_config, write_tiny_dataset


def _dataset(data_root, **overrides):
    config = Config(model="HLLM", dataset="tiny", config_dict=tiny_config(data_root, **overrides))
    return config, create_dataset(config)


def test_item_text_follows_recbole_id_mapping(tiny_data):
    _, dataset = _dataset(tiny_data)
    assert isinstance(dataset, HLLMDataset)
    texts = build_item_texts(dataset, ["title", "genre"], "{field}: {value}", "error")
    assert len(texts) == dataset.item_num and texts[0] == ""
    for internal_id in range(1, dataset.item_num):
        raw = dataset.id2token("item_id", internal_id)
        assert f"story number {raw}," in texts[internal_id]  # the text of THAT item
        assert texts[internal_id].startswith("title: ")


def test_text_fields_are_loaded_even_when_load_col_omits_them(tiny_data):
    config, dataset = _dataset(tiny_data, load_col={"inter": ["user_id", "item_id", "timestamp"]})
    assert "title" in dataset.item_feat and "genre" in dataset.item_feat


def test_missing_text_policy(tmp_path):
    root = tmp_path / "d"
    write_tiny_dataset(root, empty_text_items=(103, 107))
    _, dataset = _dataset(root)
    with pytest.raises(ItemTextError, match=r"2 items have no text .*tiny\.item.*first item_id values: 10[37], 10[37]"):
        build_item_texts(dataset, ["title", "genre"], "{field}: {value}", "error")
    texts = build_item_texts(dataset, ["title", "genre"], "{field}: {value}", "item_token")
    assert texts[dataset.token2id("item_id", "103")] == "item 103"


def test_missing_text_field_names_field_and_file(tiny_data):
    _, dataset = _dataset(tiny_data)
    with pytest.raises(ItemTextError, match=r"\['plot'\] not found in .*tiny\.item"):
        build_item_texts(dataset, ["title", "plot"], "{field}: {value}", "error")


def test_sequence_level_training_supervises_every_target_once(tiny_data):
    config, dataset = _dataset(tiny_data)
    train, _, _ = dataset.build()
    config_aug, dataset_aug = _dataset(tiny_data, train_sequence_level=False)
    train_aug, _, _ = dataset_aug.build()
    window = config["MAX_ITEM_LIST_LENGTH"]
    assert len(train) < len(train_aug)

    def targets(rows, all_positions):
        out = []
        for r in range(len(rows)):
            uid = int(rows["user_id"][r])
            seq = rows["item_id_list"][r][: int(rows["item_length"][r])].tolist()
            full = seq + [int(rows["item_id"][r])]
            chosen = full[1:] if all_positions else full[-1:]
            out += [(uid, item, len(full) - len(chosen) + k) for k, item in enumerate(chosen)]
        return out

    # every prefix row's target appears exactly once among the kept windows' positions
    aug_targets = targets(train_aug.inter_feat, all_positions=False)
    kept_targets = targets(train.inter_feat, all_positions=True)
    assert len(kept_targets) >= len(aug_targets)
    per_user = {}
    for uid, item, _ in aug_targets:
        per_user.setdefault(uid, []).append(item)
    kept_per_user = {}
    for uid, item, _ in kept_targets:
        kept_per_user.setdefault(uid, []).append(item)
    for uid, items in per_user.items():
        assert sorted(kept_per_user[uid]) == sorted(items), uid
    assert max(int(x) for x in train.inter_feat["item_length"]) <= window


def test_missing_dataset_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"looked for the folder .*nowhere/tiny"):
        _dataset(tmp_path / "nowhere")


def test_empty_after_filtering(tiny_data):
    with pytest.raises(ValueError, match=r"no interactions left after RecBole's filtering .*user_inter_num_interval"):
        _dataset(tiny_data, user_inter_num_interval="[1000,inf)")


@pytest.mark.parametrize("key,value,expected", [
    ("item_llm_layers", 0, "item_llm_layers = 0 (expected an int >= 1"),
    ("item_llm_tuning", "half", "item_llm_tuning = 'half' (expected 'frozen', 'lora' or 'full')"),
    ("num_negatives", "many", "num_negatives = 'many'"),
    ("text_fields", [], "text_fields = []"),
])
def test_bad_config_values_name_key_and_expectation(tiny_data, key, value, expected):
    with pytest.raises(ConfigValueError) as err:
        _dataset(tiny_data, **{key: value})
    assert expected in str(err.value)
