"""benchmarks/recsys.py: the same seed gives the same metrics; finished runs are skipped."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import TINY_LLAMA, tiny_creator_config, write_tiny_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import recsys  # noqa: E402

HLLM_TINY = {
    "text_fields": ["title", "genre"], "item_llm": "random", "item_llm_config": dict(TINY_LLAMA),
    "item_llm_tokenizer": "minilm", "item_llm_tuning": "frozen", "user_llm": "random",
    "user_llm_config": dict(TINY_LLAMA), "user_llm_tokenizer": "minilm", "user_llm_layers": None,
    "num_negatives": 16, "MAX_ITEM_LIST_LENGTH": 5, "epochs": 2, "load_col": None,
}


def test_same_seed_same_metrics(tmp_path):
    write_tiny_dataset(tmp_path)
    settings = {**HLLM_TINY, "data_path": str(tmp_path), "checkpoint_dir": str(tmp_path / "saved")}
    first = recsys.run_one("HLLM", "tiny", 3, settings)
    second = recsys.run_one("HLLM", "tiny", 3, settings)
    for key in ("recall@10", "ndcg@10", "mrr@10", "best_epoch", "config_hash", "trainable_params"):
        assert first[key] == second[key], key
    assert first["epochs_run"] == 2 and first["trainable_params"] < first["total_params"]


def test_harness_skips_finished_runs_and_writes_the_table(tmp_path, monkeypatch):
    write_tiny_dataset(tmp_path / "data")
    calls = []

    def in_process(model, dataset, seed, overrides, timeout):  # the subprocess, minus the process
        calls.append((model, seed))
        return recsys.run_one(model, dataset, seed, overrides)

    monkeypatch.setattr(recsys, "launch", in_process)
    args = ["--dataset", "tiny", "--data-path", str(tmp_path / "data"), "--models", "SASRec", "--seeds", "1,2",
            "--epochs", "1", "--set", "hidden_size=16", "--set", "MAX_ITEM_LIST_LENGTH=5",
            "--out-dir", str(tmp_path / "out")]
    assert recsys.main(args) == 0 and calls == [("SASRec", 1), ("SASRec", 2)]
    assert recsys.main(args) == 0 and len(calls) == 2  # the rerun skips both
    rows = [json.loads(line) for line in open(tmp_path / "out" / "recsys-tiny.jsonl")]
    assert {r["seed"] for r in rows} == {1, 2} and all(r["git_commit"] and r["config_hash"] for r in rows)
    assert "packages" in rows[0] and rows[0]["packages"]["recbole"] == "1.2.1"
    table = (tmp_path / "out" / "recsys-tiny.md").read_text()
    assert "| SASRec | 2 |" in table and "+-" in table


def test_hllm_creator_rows_carry_generation_metrics(tmp_path):
    """HLLMCreator goes through the same harness; its row and table add the test titles' scores."""
    write_tiny_dataset(tmp_path, creative=True)
    settings = tiny_creator_config(tmp_path, generation_metrics=["rouge-l", "titles_per_ad"])
    row = recsys.run_one("HLLMCreator", "tiny", 1, settings)
    assert 0.0 <= row["rouge-l"] <= 1.0 and row["titles_per_ad"] >= 1.0 and "ndcg@10" in row
    table = recsys.summarise([row], "tiny")
    assert "| rouge-l | titles_per_ad |" in table and f"{row['rouge-l']:.4g}" in table
