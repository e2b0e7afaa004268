"""Raise sites in user-facing paths that no workflow test reaches: each bad input gets
its own message, naming the value and what is expected."""
import json
import re

import numpy as np
import pytest

from recbole_hllm.chat.openai_server import ChatServer
from recbole_hllm.cli.evaluate import main as hllm_eval
from recbole_hllm.cli.serve import main as hllm_serve
from recbole_hllm.inference.clustering import ClusteringError, cluster_users

from conftest import write_tiny_dataset
from test_evaluation import RuleJudge


@pytest.mark.parametrize("kwargs, message", [
    ({"metric": "manhattan"}, "cluster metric 'manhattan': expected one of"),
    ({"backend": "dbscan"}, "cluster backend 'dbscan': expected one of"),
    ({"k": 0}, r"clusters = 0: expected an int >= 1 \(0 means per-user generation\)"),
])
def test_clustering_rejects_bad_settings(kwargs, message):
    with pytest.raises(ClusteringError, match=message):
        cluster_users(np.ones((4, 3), dtype=np.float32), **{"k": 2, **kwargs})


def test_clustering_no_users():
    with pytest.raises(ClusteringError, match="no users to cluster"):
        cluster_users(np.ones((0, 3), dtype=np.float32), 2)


def _rows(path, rows):
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows))
    return path


GOOD = {"user": "u1", "item": "101", "generated": "a title", "reference": "the title"}


@pytest.mark.parametrize("rows, extra, message", [
    (["{not json\n"], [], r"p\.jsonl:1: not JSON"),
    ([], [], r"p\.jsonl: no predictions"),
    ([{**GOOD, "history": "one text"}], [], "user u1, item 101: 'history' must be a list of texts"),
    ([GOOD], ["--metrics", "rouge-l,meteor"], r"--metrics: unknown \['meteor'\]; available: rouge-1"),
    ([GOOD], ["--judge", "openai", "--judge-against", "nobody"], "--judge-against 'nobody': systems are"),
])
def test_hllm_eval_bad_predictions_and_flags(tmp_path, capsys, rows, extra, message):
    predictions = _rows(tmp_path / "p.jsonl", rows)
    with ChatServer(RuleJudge()) as server:
        code = hllm_eval(["--predictions", str(predictions), "--out", str(tmp_path / "r"), "--no-progress",
                          "--judge-model", "rule", "--judge-base-url", server.url, *extra])
    assert code == 2
    assert re.search(message, capsys.readouterr().err.strip().splitlines()[-1])
    assert not (tmp_path / "r.json").exists()


def test_hllm_eval_missing_local_judge_names_its_flag(tmp_path, capsys):
    predictions = _rows(tmp_path / "p.jsonl", [{**GOOD, "original": "the ad"}])
    missing = tmp_path / "no-judge"
    assert hllm_eval(["--predictions", str(predictions), "--out", str(tmp_path / "r"), "--no-progress",
                      "--judge", "local", "--judge-model", str(missing)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--judge-model = '{missing}'" in last and "construction_llm" not in last


def test_hllm_eval_ids_and_pairs_must_match(tmp_path, capsys):
    write_tiny_dataset(tmp_path, n_users=3)
    predictions = _rows(tmp_path / "p.jsonl", [{**GOOD, "item": "999"}])
    assert hllm_eval(["--predictions", str(predictions), "--dataset", "tiny", "--data-path", str(tmp_path),
                      "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "item '999' is not in dataset 'tiny'" in capsys.readouterr().err
    predictions = _rows(tmp_path / "p.jsonl", [GOOD])
    other = _rows(tmp_path / "o.jsonl", [{**GOOD, "user": "u2"}])
    assert hllm_eval(["--predictions", str(predictions), "--compare", f"{other}:b", "--out", str(tmp_path / "r"),
                      "--no-progress"]) == 2
    assert "o.jsonl: its (user, item) pairs differ from" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, message", [({"max_batch": 0}, "max_batch must be >= 1, got 0"),
                                             ({"batch_wait_ms": -1}, "batch_wait_ms must be >= 0, got -1")])
def test_chat_server_settings(kwargs, message):
    from recbole_hllm.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=message):
        ChatServer(RuleJudge(), **kwargs)


def test_hllm_serve_port_in_use(tiny_chat_model, capsys):
    with ChatServer(RuleJudge()) as busy:
        port = busy.url.split(":")[-1].split("/")[0]
        assert hllm_serve(["--model", str(tiny_chat_model), "--port", port]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
