"""run_hyper: RecBole's HyperTuning + objective_function train and rank real (tiny) HLLM
runs with hyperopt alone (no ray), for the default exhaustive search and for TPE."""
import sys

import pytest
import yaml

from conftest import tiny_config
from recbole_hllm.cli import run_hyper

# hyperopt comes with the optional [tune] extra (installed by make setup); a machine
# without it (e.g. a GPU box with only the runtime wheels) skips these tests
pytest.importorskip("hyperopt")


@pytest.mark.parametrize("algo, extra", [("exhaustive", []), ("bayes", ["--max_evals", "2"])])
def test_run_hyper_trains_every_trial_and_reports_the_best(tmp_path, tiny_data, monkeypatch, capsys, algo, extra):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tiny_data, epochs=1)))
    space = tmp_path / "hllm.hyper"
    space.write_text("learning_rate choice [0.01,0.0001]\n")
    out = tmp_path / "hyper.result"
    argv = ["--model=HLLM", "--dataset=tiny", f"--config_files={config}", f"--params_file={space}",
            f"--output_file={out}", "--algo", algo, *extra]
    monkeypatch.setattr(sys, "argv", ["run_hyper", *argv])
    assert run_hyper.main(argv) == 0
    printed = capsys.readouterr().out
    assert "best params: {'learning_rate': " in printed and "ndcg@10" in printed
    trials = out.read_text()
    assert trials.count("Test result:") >= 1 and ("learning_rate:0.01\n" in trials or "learning_rate:0.0001\n" in trials)
    if algo == "exhaustive":  # every combination, each with its own valid and test results
        assert "learning_rate:0.01\n" in trials and "learning_rate:0.0001\n" in trials
        assert trials.count("Test result:") == 2
    # (TPE draws its 2 trials at random: both may be the same value)
