"""Every console script, run as the installed script: a known user error is one line
(``prog: error: ...``) and exit status 2, no traceback; ``--debug`` shows the traceback."""
import subprocess

import yaml

from conftest import console_script, subprocess_env, tiny_config



def _run(args, tmp_path, timeout=240):
    return subprocess.run([console_script(args[0]), *args[1:]], capture_output=True, text=True, cwd=tmp_path,
                          env=subprocess_env(tmp_path), timeout=timeout)


def _one_line_error(out, prog: str, expected: str):
    assert out.returncode == 2, (out.returncode, out.stderr[-3000:])
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{prog}: error: ") and expected in last, last
    return last


def _tiny_config_file(tmp_path, data, **overrides):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(data, **overrides)))
    return path


def test_run_recbole_bad_config_value_is_one_line(tmp_path, tiny_data):
    cfg = _tiny_config_file(tmp_path, tiny_data)
    args = ["run_recbole", "--model=HLLM", "--dataset=tiny", f"--config_files={cfg}", "--user_llm_layers=abc"]
    _one_line_error(_run(args, tmp_path), "run_recbole",
                    "Invalid recbole_hllm config: user_llm_layers = 'abc' (expected an int >= 1 or null")
    debug = _run([*args, "--debug"], tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ConfigValueError" in debug.stderr


def test_run_recbole_unknown_model_and_missing_dataset(tmp_path, tiny_data):
    _one_line_error(_run(["run_recbole", "--model=NoSuchModel"], tmp_path), "run_recbole",
                    "Unknown model 'NoSuchModel'. recbole_hllm models: HLLM, HLLMCreator.")
    cfg = _tiny_config_file(tmp_path, tiny_data)
    _one_line_error(_run(["run_recbole", "--model=HLLM", "--dataset=nowhere", f"--config_files={cfg}"], tmp_path),
                    "run_recbole", "Dataset 'nowhere' not found: looked for the folder")


def test_run_recbole_user_error_in_a_worker_process_is_one_line(tmp_path, tiny_data):
    cfg = _tiny_config_file(tmp_path, tiny_data)
    out = _run(["run_recbole", "--model=HLLM", "--dataset=tiny", f"--config_files={cfg}", "--nproc=2",
                "--port=29613", "--num_negatives=0"], tmp_path)
    _one_line_error(out, "run_recbole", "num_negatives = 0 (expected an int >= 1)")


def test_run_hyper_missing_search_space_and_ray(tmp_path):
    _one_line_error(_run(["run_hyper", "--model=HLLM", "--params_file=none.hyper"], tmp_path), "run_hyper",
                    "none.hyper")
    space = tmp_path / "space.hyper"
    space.write_text("learning_rate choice [0.01,0.001]\n")
    _one_line_error(_run(["run_hyper", "--model=HLLM", f"--params_file={space}", "--tool", "ray"], tmp_path),
                    "run_hyper", "run_hyper --tool ray needs a working ray")


def test_hllm_generate_missing_checkpoint(tmp_path):
    _one_line_error(_run(["hllm-generate", "--checkpoint", "missing.pth"], tmp_path), "hllm-generate",
                    "checkpoint missing.pth does not exist")


def test_hllm_build_creatives_unknown_dataset(tmp_path):
    _one_line_error(_run(["hllm-build-creatives", "--dataset", "nowhere", "--data-path", str(tmp_path)], tmp_path),
                    "hllm-build-creatives", "nowhere")


def test_hllm_eval_missing_predictions(tmp_path):
    _one_line_error(_run(["hllm-eval", "--predictions", "missing.jsonl", "--out", "report"], tmp_path), "hllm-eval", "missing.jsonl")


def test_hllm_serve_missing_model(tmp_path):
    """The error names the flag the user gave, not a config key of another tool."""
    line = _one_line_error(_run(["hllm-serve", "--model", str(tmp_path / "no-model")], tmp_path), "hllm-serve",
                           f"--model = '{tmp_path / 'no-model'}'")
    assert "construction_llm" not in line and "'random'" not in line
