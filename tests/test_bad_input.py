"""Bad input, second round: broken atomic files, files that are not checkpoints, process
counts that cannot run and misspelled config keys. Each is one line that names the file,
line, field, key or count and what is expected (a warning for a misspelled key)."""
import logging
import subprocess
import sys
import zipfile

import pytest
import torch

from recbole_hllm.checkpoint import CheckpointError, check_checkpoint_file, load_checkpoint
from recbole_hllm.data.atomic_files import AtomicFileError
from recbole_hllm.integration.launch import ProcessCountError, check_process_count

from conftest import console_script, subprocess_env, tiny_config, tiny_creator_config, write_tiny_dataset

INTER_HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"
ITEM_HEADER = "item_id:token\ttitle:token_seq\tgenre:token\tdescription:token_seq\n"


def _dataset(model: str, data, **overrides):
    from recbole.config import Config
    from recbole.data import create_dataset

    if model != "HLLM":
        overrides.setdefault("load_col", None)  # RecBole's default load_col leaves the time field out
    return create_dataset(Config(model=model, dataset="tiny", config_dict=tiny_config(data, **overrides)))


def _rows(path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


# -- structurally broken atomic files ----------------------------------------------------------------------------
@pytest.mark.parametrize("suffix, text, message", [
    ("inter", INTER_HEADER, r"tiny\.inter has a header and no rows: expected at least one line of 3 values "
                            r"\(user_id, item_id, timestamp\) after the header"),
    ("item", ITEM_HEADER, r"tiny\.item has a header and no rows: expected at least one line of 4 values"),
    ("inter", "", r"tiny\.inter: line 1 is empty: expected the header, name:type fields separated by a tab"),
    ("inter", INTER_HEADER + "u1\t101\t1\nu1\t102\nu2\t103\t3\n",
     r"tiny\.inter: line 3 has 2 fields, the header has 3: timestamp missing\. Expected 3 values separated by a tab"),
    ("item", ITEM_HEADER + "101\ta title\tdrama\ta film\n102\tanother title\n",
     r"tiny\.item: line 3 has 2 fields, the header has 4: genre, description missing"),
    ("inter", INTER_HEADER + "u1\t101\t1\nu1\t102\t2\t9\n",
     r"tiny\.inter: line 3 has 4 fields, the header has 3 \(user_id, item_id, timestamp\): a value holds a tab, "
     r"or the line ends with one\?"),
    ("inter", "user_id:token\titem_id\ttimestamp:float\nu1\t101\t1\n",
     r"tiny\.inter: line 1 \(the header\), field 2 'item_id' has no :type: expected name:type with type one of "
     r"token, token_seq, float, float_seq"),
    ("inter", "user_id:token\titem_id:tokn\ttimestamp:float\nu1\t101\t1\n",
     r"field 2 'item_id:tokn' has the type 'tokn'"),
    ("inter", "user_id:token,item_id:token,timestamp:float\nu1,101,1\n",
     r"The header has no field_separator \(a tab\) between its fields"),
    ("inter", INTER_HEADER + "u1\t101\t1\nu1\t102\tsoon\n",
     r"tiny\.inter: line 3, field timestamp: 'soon' is not a number \(the header declares timestamp:float\)"),
    ("item", ITEM_HEADER + '101\t"Heat" (1995)\tdrama\ta film\n', r"tiny\.item: line 2: '\t' expected after '\"'"),
])
@pytest.mark.parametrize("model", ["HLLM", "SASRec"])
def test_broken_atomic_file_names_file_line_and_field(tmp_path, model, suffix, text, message):
    data = tmp_path / "data"
    write_tiny_dataset(data)
    (data / "tiny" / f"tiny.{suffix}").write_text(text)
    with pytest.raises(AtomicFileError, match=message):
        _dataset(model, data)


def test_atomic_file_checks_leave_good_files_alone(tmp_path):
    """Windows line ends, empty values with their tabs, pandas' NA words in a float field,
    and a short row that lacks only a column load_col leaves out, all read as before."""
    data = tmp_path / "data"
    write_tiny_dataset(data)
    inter = data / "tiny" / "tiny.inter"
    lines = inter.read_text().splitlines()
    lines[2] = lines[2].rsplit("\t", 1)[0] + "\tNA"
    inter.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    item = data / "tiny" / "tiny.item"
    rows = item.read_text().splitlines()
    rows[1] = rows[1].split("\t")[0] + "\t\t\t"  # an item without text: every value empty
    rows[2] = "\t".join(rows[2].split("\t")[:3])  # no description, which HLLM does not load
    _rows(item, rows)
    dataset = _dataset("HLLM", data, missing_text="item_token")
    assert dataset.inter_num == len(lines) - 1 and dataset.item_num == 41


@pytest.mark.parametrize("model, flags", [("HLLM", []), ("SASRec", ["--load_col=None"])])
def test_run_recbole_broken_atomic_file_is_one_line(tmp_path, model, flags):
    data = tmp_path / "data"
    write_tiny_dataset(data)
    with open(data / "tiny" / "tiny.inter", "a") as f:
        f.write("u1\t102\n")
    out = subprocess.run([console_script("run_recbole"), f"--model={model}", "--dataset=tiny", f"--data_path={data}",
                          "--epochs=1", *flags], capture_output=True, text=True, cwd=tmp_path,
                         env=subprocess_env(tmp_path), timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("run_recbole: error: ") and "tiny.inter: line " in last and "timestamp missing" in last


def test_time_field_left_out_by_load_col_says_so(tiny_data):
    from recbole_hllm.integration.compat import MissingTimeFieldError

    with pytest.raises(MissingTimeFieldError, match=r"tiny\.inter has the time field 'timestamp', but load_col does "
                                                    r"not load it \(load_col\['inter'\] = \['user_id', 'item_id'\]\)"):
        _dataset("SASRec", tiny_data, load_col={"inter": ["user_id", "item_id"]}).build()


# -- files that are not (whole) checkpoints --------------------------------------------------------------------
def _checkpoint(path):
    torch.save({"config": {"model": "HLLM"}, "state_dict": {"w": torch.ones(64, 64)}, "other_parameter": None}, path)
    return path


def _not_checkpoints(folder):
    whole = _checkpoint(folder / "whole.pth")
    (folder / "cut.pth").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    (folder / "notes.pth").write_text("hello, not a checkpoint\n")
    with zipfile.ZipFile(folder / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hi")
    (folder / "empty.pth").write_bytes(b"")
    torch.save({"w": torch.ones(2)}, folder / "weights.pt")
    return {
        "cut.pth": r"is not a complete recbole_hllm checkpoint: the zip archive is cut short \(\d+ bytes",
        "notes.pth": "is not a recbole_hllm checkpoint: it is neither a zip archive",
        "other.zip": "is not a recbole_hllm checkpoint: it is a zip archive without torch's data.pkl",
        "empty.pth": r"is not a complete recbole_hllm checkpoint: the file is empty \(0 bytes\)",
        "weights.pt": "is not a recbole_hllm checkpoint: the torch file holds a dict with the keys 'w', not "
                      "RecBole's 'config' and 'state_dict'",
    }


def test_load_checkpoint_rejects_what_is_not_one(tmp_path):
    for name, message in _not_checkpoints(tmp_path).items():
        with pytest.raises(CheckpointError, match=f"checkpoint {tmp_path / name} {message}"):
            load_checkpoint(str(tmp_path / name))
    assert set(load_checkpoint(str(tmp_path / "whole.pth"))) == {"config", "state_dict", "other_parameter"}
    check_checkpoint_file(str(tmp_path / "whole.pth"))
    with pytest.raises(FileNotFoundError, match="it is a folder"):
        check_checkpoint_file(str(tmp_path))


def test_hllm_generate_and_load_data_and_model_reject_a_cut_checkpoint(tmp_path, capsys):
    from recbole.quick_start import load_data_and_model

    from recbole_hllm.cli.generate import main as hllm_generate

    messages = _not_checkpoints(tmp_path)
    for name in ("cut.pth", "notes.pth"):
        assert hllm_generate(["--checkpoint", str(tmp_path / name), "--no-progress"]) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith(f"hllm-generate: error: checkpoint {tmp_path / name} is not a"), last
        with pytest.raises(CheckpointError, match=messages[name]):
            load_data_and_model(str(tmp_path / name))


# -- process counts that cannot run ------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"nproc": 0}, r"--nproc 0: expected 1 or more processes"),
    ({"nproc": -2}, r"--nproc -2: expected 1 or more processes"),
    ({"nproc": 2, "world_size": 1}, r"--world_size 1 is less than --nproc 2"),
    ({"nproc": 2, "device_type": "cuda", "gpu_count": 1},
     r"--nproc 2 starts one process per GPU, but 1 GPU is visible: pass --nproc 1, or --use_gpu=False to run 2 "
     r"processes on the CPU \(gloo\)"),
    ({"nproc": 4, "device_type": "cuda", "gpu_count": 2, "cpu_option": "CUDA_VISIBLE_DEVICES="},
     r"but 2 GPUs are visible: pass --nproc 2 \(or fewer\), or CUDA_VISIBLE_DEVICES= to run 4 processes"),
    ({"nproc": 2, "device_type": "cuda", "gpu_count": 4, "gpu_id": "0"},
     r"--nproc 2 needs one GPU id per process, but gpu_id = '0' names 1: pass --gpu_id=0,1"),
])
def test_check_process_count_rejects(kwargs, message):
    with pytest.raises(ProcessCountError, match=message):
        check_process_count(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {"nproc": 1}, {"nproc": 8}, {"nproc": 2, "world_size": 4}, {"nproc": 1, "device_type": "cuda", "gpu_count": 1},
    {"nproc": 2, "device_type": "cuda", "gpu_count": 2, "gpu_id": "0,1"},
    {"nproc": 2, "device_type": "cuda", "gpu_count": 2},  # gloo on CUDA: no gpu_id assert
])
def test_check_process_count_accepts(kwargs):
    check_process_count(**kwargs)


def test_process_counts_at_the_entry_points(tmp_path, capsys, monkeypatch):
    from recbole_hllm.cli.generate import main as hllm_generate
    from recbole_hllm.cli.run_recbole import main as run_recbole

    checkpoint = _checkpoint(tmp_path / "c.pth")
    monkeypatch.setattr(sys, "argv", ["run_recbole"])  # run_recbole's main sets sys.argv for RecBole's Config
    assert run_recbole(["--model=HLLM", "--nproc=0"]) == 2
    assert capsys.readouterr().err.strip().endswith("run_recbole: error: --nproc 0: expected 1 or more processes "
                                                    "(1 runs in this process, N > 1 starts N worker processes)")
    assert hllm_generate(["--checkpoint", str(checkpoint), "--nproc", "0"]) == 2
    assert "hllm-generate: error: --nproc 0: expected 1 or more processes" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with one GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert hllm_generate(["--checkpoint", str(checkpoint), "--nproc", "2"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "hllm-generate: error: --nproc 2 starts one process per GPU, but 1 GPU is visible: pass --nproc 1, or "
        "CUDA_VISIBLE_DEVICES= (no GPU visible) to run 2 processes on the CPU (gloo)")


@pytest.mark.parametrize("gpus, overrides, message", [
    (1, {}, "--nproc 2 starts one process per GPU, but 1 GPU is visible: pass --nproc 1, or --use_gpu=False"),
    (1, {"dist_backend": "gloo"}, "--nproc 2 starts one process per GPU, but 1 GPU is visible"),
    (4, {}, "--nproc 2 needs one GPU id per process, but gpu_id = '0' names 1: pass --gpu_id=0,1"),
])
def test_run_recbole_worker_checks_gpus_before_recbole_asserts(tiny_data, monkeypatch, gpus, overrides, message):
    """What each run_recbole worker's Config does first (RecBole's bare assert / CUDA's
    invalid device ordinal otherwise), on a faked machine with ``gpus`` GPUs."""
    from recbole.config import Config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    worker = {"local_rank": 0, "nproc": 2, "world_size": 2, "offset": 0, "ip": "localhost", "port": "1"}
    with pytest.raises(ProcessCountError, match=message):
        Config(model="HLLM", dataset="tiny", config_dict=tiny_config(tiny_data, **worker, **overrides, use_gpu=True))


def test_use_gpu_false_picks_gloo_on_a_gpu_machine(monkeypatch):
    from recbole_hllm.integration.distributed_fixes import choose_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_backend("auto") == "nccl" and choose_backend("auto", use_gpu=False) == "gloo"
    check_process_count(2, "cpu", 0)  # what such a run then checks: no GPU per process


def test_valid_metric_may_name_a_generation_metric_only_with_generate_on_valid():
    from recbole_hllm.config import ConfigValueError, check_valid_metric

    check_valid_metric({"valid_metric": "NDCG@10", "generate_on_valid": False}, ["rouge-l"])
    check_valid_metric({"valid_metric": "ROUGE-L", "generate_on_valid": True}, ["rouge-l"])
    with pytest.raises(ConfigValueError, match="valid_metric = 'ROUGE-L' is a generation metric: set generate_on_valid: True"):
        check_valid_metric({"valid_metric": "ROUGE-L", "generate_on_valid": False}, ["rouge-l"])


# -- misspelled config keys ------------------------------------------------------------------------------------
@pytest.fixture
def key_warnings(caplog, monkeypatch):
    from recbole_hllm import config

    monkeypatch.setattr(config, "_WARNED_KEYS", set())
    caplog.set_level(logging.WARNING, logger="recbole_hllm.config")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "recbole_hllm.config"]


def test_misspelled_plugin_key_warns_once_with_a_suggestion(tiny_data, key_warnings):
    from recbole.config import Config

    for _ in range(2):  # once per key and process
        config = Config(model="HLLM", dataset="tiny",
                        config_dict=tiny_config(tiny_data, user_llm_layerz=3, item_llm_tunning="full"))
    assert key_warnings() == [
        "recbole_hllm: config key 'user_llm_layerz' is not a recbole_hllm or RecBole key, so nothing reads it: "
        "did you mean 'user_llm_layers'?",
        "recbole_hllm: config key 'item_llm_tunning' is not a recbole_hllm or RecBole key, so nothing reads it: "
        "did you mean 'item_llm_tuning'?"]
    assert config["user_llm_layers"] is None  # the key it meant keeps its value


def test_known_keys_do_not_warn(tiny_data, tiny_creative_data, key_warnings):
    from recbole.config import Config

    Config(model="HLLM", dataset="tiny", config_dict=tiny_config(  # RecBole keys, other models' keys, dataset keys
        tiny_data, n_layers=2, hidden_size=64, train_neg_sample_args=None, encoding="utf-8",
        creative_title_field="title", valid_metric="NDCG@10", gpu_id="0", metrics=["Recall"]))
    Config(model="HLLMCreator", dataset="tiny", config_dict=tiny_creator_config(tiny_creative_data))
    Config(model="SASRec", dataset="tiny", config_dict=tiny_config(tiny_data, user_llm_layerz=3))  # not our model
    assert key_warnings() == []


# -- renamed config keys -------------------------------------------------------------------------------------
def test_old_key_name_is_read_as_the_new_one_with_a_warning(tiny_creative_data, key_warnings):
    from recbole.config import Config

    config = Config(model="HLLMCreator", dataset="tiny",
                    config_dict=tiny_creator_config(tiny_creative_data, share_soft_token_projector=True))
    assert config["share_user_conditioner"] is True and "share_soft_token_projector" not in config.final_config_dict
    assert key_warnings() == ["recbole_hllm: config key 'share_soft_token_projector' is deprecated and will be "
                              "removed; it is read as 'share_user_conditioner', the name to use from now on"]


def test_old_and_new_key_names_that_disagree_are_an_error(tiny_creative_data):
    from recbole.config import Config

    from recbole_hllm.config import ConfigValueError

    with pytest.raises(ConfigValueError, match="share_soft_token_projector = True and share_user_conditioner = False"):
        Config(model="HLLMCreator", dataset="tiny", config_dict=tiny_creator_config(
            tiny_creative_data, share_soft_token_projector=True, share_user_conditioner=False))


def test_checkpoint_saved_before_a_rename_loads_under_the_new_name(tiny_creative_data, tmp_path, key_warnings):
    from recbole.config import Config

    config = Config(model="HLLMCreator", dataset="tiny",
                    config_dict=tiny_creator_config(tiny_creative_data, share_user_conditioner=True))
    config.final_config_dict["share_soft_token_projector"] = config.final_config_dict.pop("share_user_conditioner")
    torch.save({"config": config, "state_dict": {}}, tmp_path / "old.pth")  # as saved before the rename
    loaded = load_checkpoint(str(tmp_path / "old.pth"))["config"]
    assert loaded["share_user_conditioner"] is True and "share_soft_token_projector" not in loaded.final_config_dict
    assert key_warnings() == []  # the user did not type the old name
