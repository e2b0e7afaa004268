"""Every way a user starts a run: console script, python -m, quick_start, load_data_and_model."""
import json
import subprocess
import sys

import pytest
import yaml
from recbole.quick_start import run_recbole

from conftest import console_script, subprocess_env, tiny_config


def _config_file(tmp_path, data_root, **overrides):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(data_root, **overrides)))
    return path


def _run_cli(args, tmp_path):
    return subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=subprocess_env(tmp_path), timeout=240)


def test_console_script_runs_hllm_with_key_value_overrides(tmp_path, tiny_data):
    cfg = _config_file(tmp_path, tiny_data, state="INFO")
    out = _run_cli([_script("run_recbole"), "--model=HLLM", "--dataset=tiny", f"--config_files={cfg}",
                    "--epochs=1", "--num_negatives=8"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "test result" in log and "ndcg@10" in log
    assert "num_negatives = 8" in log and "epochs = 1" in log  # --key=value reached RecBole's Config


def test_console_script_runs_recbole_builtin_model(tmp_path, tiny_data):
    cfg = tmp_path / "sasrec.yaml"
    cfg.write_text(yaml.safe_dump({
        "data_path": str(tiny_data), "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "epochs": 1, "hidden_size": 8, "inner_size": 16, "n_layers": 1, "n_heads": 1,
        "MAX_ITEM_LIST_LENGTH": 5, "show_progress": False,
    }))
    out = _run_cli([sys.executable, "-m", "recbole_hllm", "--model=SASRec", "--dataset=tiny",
                    f"--config_files={cfg}"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "test result" in out.stdout + out.stderr


def test_console_script_unknown_model(tmp_path):
    out = _run_cli([_script("run_recbole"), "--model=NoSuchModel"], tmp_path)
    assert out.returncode != 0
    assert "Unknown model 'NoSuchModel'" in out.stderr and "HLLM" in out.stderr


def test_quick_start_then_load_in_fresh_process(tmp_path, tiny_data):
    result = run_recbole(model="HLLM", dataset="tiny", config_dict=tiny_config(tiny_data))
    assert set(result["test_result"]) >= {"recall@10", "ndcg@10", "mrr@10", "hit@10"}
    checkpoint = next((tiny_data / "saved").glob("HLLM-*.pth"))
    code = (
        "import json, sys, recbole_hllm, torch\n"
        "from recbole.quick_start import load_data_and_model\n"
        "from recbole.utils import get_trainer\n"
        f"config, model, dataset, train, valid, test = load_data_and_model({str(checkpoint)!r})\n"
        "trainer = get_trainer(config['MODEL_TYPE'], config['model'])(config, model)\n"
        "res = trainer.evaluate(test, load_best_model=False, show_progress=False)\n"
        "print('RESULT', json.dumps({k: float(v) for k, v in res.items()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env=subprocess_env(tmp_path), timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    reloaded = json.loads(out.stdout.split("RESULT", 1)[1])
    for key, value in result["test_result"].items():
        assert reloaded[key] == pytest.approx(float(value), abs=1e-4), key


def _script(name):
    return console_script(name)
