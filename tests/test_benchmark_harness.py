"""benchmarks/recsys.py: an interrupted run resumes from its last finished epoch in a fresh
process and ends with the uninterrupted run's metrics; finished runs are skipped."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import TINY_LLAMA, subprocess_env, tiny_creator_config, write_tiny_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import recsys  # noqa: E402

HLLM_TINY = {
    "text_fields": ["title", "genre"], "item_llm": "random", "item_llm_config": dict(TINY_LLAMA),
    "item_llm_tokenizer": "minilm", "item_llm_tuning": "frozen", "user_llm": "random",
    "user_llm_config": dict(TINY_LLAMA), "user_llm_tokenizer": "minilm", "user_llm_layers": None,
    "num_negatives": 16, "MAX_ITEM_LIST_LENGTH": 5, "epochs": 2, "load_col": None,
}


METRICS = ("recall@10", "ndcg@10", "mrr@10", "uni100_ndcg@10", "pop100_recall@10", "best_epoch")


def _launch(tmp_path, settings, run_dir, monkeypatch):
    monkeypatch.setenv("RECBOLE_HLLM_CACHE", str(tmp_path / run_dir / "cache"))  # each process: a cold cache
    return recsys.launch("HLLM", "tiny", 3, settings, str(tmp_path / run_dir), 300)


KILLED_AFTER_FIRST_EPOCH = """
import json, os, sys
from benchmarks import recsys
save = recsys.Progress.save_epoch
def save_then_die(self, epoch_idx, score):
    save(self, epoch_idx, score)
    os._exit(9)  # the session ends: no cleanup, no final row
recsys.Progress.save_epoch = save_then_die
job = json.loads(sys.argv[1])
recsys.run_one(job["model"], job["dataset"], job["seed"], job["overrides"], job["run_dir"])
"""


def test_an_interrupted_run_resumes_in_a_fresh_process_with_the_same_metrics(tmp_path, monkeypatch):
    """The killed run's epoch 0 and the resumed process's epochs 1-2 give exactly the
    uninterrupted run's metrics: the seed fixes everything, across fresh processes."""
    write_tiny_dataset(tmp_path)
    settings = {**HLLM_TINY, "data_path": str(tmp_path), "epochs": 3, "stopping_step": 10}
    whole = _launch(tmp_path, settings, "whole", monkeypatch)
    job = json.dumps({"model": "HLLM", "dataset": "tiny", "seed": 3, "overrides": settings,
                      "run_dir": str(tmp_path / "cut")})
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER_FIRST_EPOCH, job], capture_output=True, text=True,
                            cwd=recsys.ROOT, env={**subprocess_env(tmp_path / "cut"), "PYTHONPATH": str(recsys.ROOT)},
                            timeout=300)
    assert killed.returncode == 9 and (tmp_path / "cut" / "last.pth").exists(), killed.stderr[-2000:]
    resumed = _launch(tmp_path, settings, "cut", monkeypatch)
    assert resumed["resumed_from_epoch"] == 0 and whole["resumed_from_epoch"] is None
    assert resumed["epochs_run"] == whole["epochs_run"] == 3
    for key in (*METRICS, "config_hash", "trainable_params"):
        assert resumed[key] == whole[key], key  # epochs 1-2 trained as the uninterrupted run trained them
    assert whole["trainable_params"] < whole["total_params"]
    assert whole["converged"] is False and whole["epoch_cap"] == 3  # ran to the cap


def test_harness_skips_finished_runs_and_writes_the_table(tmp_path, monkeypatch):
    write_tiny_dataset(tmp_path / "data")
    calls = []

    def in_process(model, dataset, seed, overrides, run_dir, timeout):  # the subprocess, minus the process
        calls.append((model, seed))
        return recsys.run_one(model, dataset, seed, overrides, run_dir)

    monkeypatch.setattr(recsys, "launch", in_process)
    args = ["--dataset", "tiny", "--data-path", str(tmp_path / "data"), "--models", "SASRec", "--seeds", "1,2",
            "--epochs", "1", "--set", "hidden_size=16", "--set", "MAX_ITEM_LIST_LENGTH=5",
            "--out-dir", str(tmp_path / "out"), "--state-dir", str(tmp_path / "state")]
    assert recsys.main(args) == 0 and calls == [("SASRec", 1), ("SASRec", 2)]
    assert recsys.main(args) == 0 and len(calls) == 2  # the rerun skips both
    rows = [json.loads(line) for line in open(tmp_path / "out" / "recsys-tiny.jsonl")]
    assert {r["seed"] for r in rows} == {1, 2} and all(r["git_commit"] and r["config_hash"] for r in rows)
    assert "packages" in rows[0] and rows[0]["packages"]["recbole"] == "1.2.1"
    table = (tmp_path / "out" / "recsys-tiny.md").read_text()
    assert "| SASRec | 2 | capped |" in table and "+-" in table and "uni100_ndcg@10" in table
    assert not list((tmp_path / "state").glob("*/*"))  # finished runs leave no folder
    (tmp_path / "out" / "recsys-tiny.md").unlink()
    assert recsys.main([*args, "--models", "GRU4Rec", "--table-only"]) == 0 and len(calls) == 2
    assert "| SASRec | 2 | capped |" in (tmp_path / "out" / "recsys-tiny.md").read_text()  # ran nothing, wrote all


def test_a_model_that_cannot_run_gets_one_line_saying_why(tmp_path, monkeypatch):
    """A failing model does not stop the others; the table says why it has no row."""
    write_tiny_dataset(tmp_path / "data")
    real = recsys.run_one
    monkeypatch.setenv("RECBOLE_HLLM_CACHE", str(tmp_path / "cache"))
    run_dirs = []

    def in_process(model, dataset, seed, overrides, run_dir, timeout):
        run_dirs.append(Path(run_dir))
        if model == "NoSuchModel":
            raise RuntimeError(f"{model} seed {seed} failed:\nValueError: `model_name` [NoSuchModel] is not the name")
        return real(model, dataset, seed, overrides, run_dir)

    monkeypatch.setattr(recsys, "launch", in_process)
    args = ["--dataset", "tiny", "--data-path", str(tmp_path / "data"), "--models", "NoSuchModel,FPMC",
            "--seeds", "1", "--epochs", "1", "--out-dir", str(tmp_path / "out")]
    assert recsys.main(args) == 0
    table = (tmp_path / "out" / "recsys-tiny.md").read_text()
    assert "| FPMC | 1 |" in table
    assert "Could not run:\n* NoSuchModel seed 1: ValueError: `model_name` [NoSuchModel] is not the name" in table
    # unfinished runs keep their state in the cache folder, not in the work tree a new checkout replaces
    assert all(d.parent == tmp_path / "cache" / "recsys-runs" / "tiny" for d in run_dirs), run_dirs


def test_hllm_creator_rows_carry_generation_metrics(tmp_path):
    """HLLMCreator goes through the same harness; its row and table add the test titles' scores."""
    write_tiny_dataset(tmp_path, creative=True)
    settings = tiny_creator_config(tmp_path, generation_metrics=["rouge-l", "titles_per_ad"])
    row = recsys.run_one("HLLMCreator", "tiny", 1, settings, str(tmp_path / "run"))
    assert {"rouge-l", "titles_per_ad", "shuffled_rouge-l", "ndcg@10", "uni100_ndcg@10"} <= set(row)
    table = recsys.summarise([row], "tiny")
    assert "| rouge-l | titles_per_ad |" in table and f"{row['rouge-l']:.4g}" in table


def test_nearest_neighbour_title_is_the_closest_other_users_training_title():
    from types import SimpleNamespace

    import torch

    from benchmarks.title_baselines import nearest_neighbour_titles

    # creative rows: 0-1 train (ad 7 for users 1 and 2), 2-3 test (ad 7 for user 3, ad 8 for user 1)
    table = SimpleNamespace(users=[1, 2, 3, 1], items=[7, 7, 7, 8], titles=["t1", "t2", "ref3", "ref1"])
    vectors = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0]]), dim=-1)
    user_of_row = {1: 0, 2: 1, 3: 2}  # test-split row of each user
    titles, fell_back = nearest_neighbour_titles(table, {7: "orig7", 8: "orig8"}, [2, 0], {2: 2, 0: 3}, vectors,
                                                 user_of_row, training_rows=[0, 1])
    assert titles == ["t2", "orig8"] and fell_back == 1  # user 3 is closest to user 2; ad 8 has no training title


def test_title_baselines_run_on_a_checkpoint(tmp_path):
    from recbole.quick_start import run_recbole

    from benchmarks import title_baselines

    data = write_tiny_dataset(tmp_path / "data", creative=True).parent
    run_recbole(model="HLLMCreator", dataset="tiny", config_dict=tiny_creator_config(data))
    [checkpoint] = list((data / "saved").glob("HLLMCreator-*.pth"))
    assert title_baselines.main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "tb")]) == 0
    report = json.loads((tmp_path / "tb.json").read_text())
    total = len((data / "tiny" / "tiny.creative").read_text().splitlines()) - 1
    assert report["pairs"] == 24 and 0 < report["training_titles"] <= total - 24  # test (and valid) held out
    assert {"HLLMCreator (this checkpoint)", "nearest neighbour (U)", "nearest neighbour (history)",
            "original title"} <= set(report["systems"])
    assert report["systems"]["original title"]["rouge-l"] < 1.0 and "titles_per_ad" in report["systems"]["original title"]


def test_the_table_lists_unfinished_runs_with_their_progress(tmp_path):
    """A run cut before its stop (here: its state left as a cut run leaves it) is named under the table."""
    write_tiny_dataset(tmp_path / "data")
    args = ["--dataset", "tiny", "--data-path", str(tmp_path / "data"), "--epochs", "2",
            "--out-dir", str(tmp_path / "out"), "--state-dir", str(tmp_path / "state"), "--table-only"]
    overrides = {"epochs": 2, "stopping_step": 10, "data_path": str(tmp_path / "data"), "load_col": None}
    run_dir = tmp_path / "state" / "tiny" / recsys.run_key("FPMC", 1, overrides)
    recsys.run_one("FPMC", "tiny", 1, overrides, str(run_dir))  # main() would now append the row and delete this
    assert recsys.main(args) == 0
    table = (tmp_path / "out" / "recsys-tiny.md").read_text()
    assert "Not finished yet (a rerun resumes each from its last epoch):\n* FPMC seed 1: 2 epochs, best validation" \
        in table, table


def test_trained_item_variant_computes_in_bf16_only_where_it_is_native(monkeypatch):
    """bf16 is emulated on a CPU without AVX512-BF16/AMX (an ml-100k step: 42.95 s against 1.86 s
    in float32), so the variant falls back to float32 there, and keeps its run state apart."""
    from recbole_hllm.backbones import backbone

    keys = {}
    for native, dtype in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(backbone, "fast_bf16", lambda device, native=native: native)
        model, settings = recsys.variant_settings("HLLM-trained-items")
        assert (model, settings["item_llm_dtype"], settings["item_llm_trained_layers"]) == ("HLLM", dtype, 1)
        keys[dtype] = recsys.run_key("HLLM-trained-items", 2, {"epochs": 100})
    assert keys["bfloat16"] != keys["float32"]
    assert recsys.variant_settings("HLLM-user4") == recsys.VARIANTS["HLLM-user4"]
