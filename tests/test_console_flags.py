"""The console scripts as installed (not their ``main()``), with the flags no other test
runs: hllm-serve's options, hllm-build-creatives --ads random / --restart, hllm-eval
--references / --metrics / --judge-against without a dataset, hllm-generate
--backend / --threshold / --per-user."""
import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

from recbole.quick_start import run_recbole
from rouge_score import rouge_scorer

from recbole_hllm.chat.openai_client import OpenAIChatBackend
from recbole_hllm.chat.openai_server import ChatServer
from recbole_hllm.construction.builder import paths_for

from conftest import console_script, subprocess_env, tiny_creator_config, write_tiny_dataset
from test_construction import ScriptedBackend
from test_evaluation import RuleJudge
from test_openai_chat import ask



def _run(args, tmp_path, env=None):
    out = subprocess.run([console_script(args[0]), *map(str, args[1:])], capture_output=True, text=True, cwd=tmp_path,
                         env=env or subprocess_env(tmp_path), timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_hllm_serve_script_with_its_options(tiny_chat_model, tmp_path):
    """SIGTERM, not SIGINT: a shell that starts the test run in the background without job
    control makes every child ignore SIGINT (as CI's may)."""
    env = {**subprocess_env(tmp_path), "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([console_script("hllm-serve"), "--model", str(tiny_chat_model), "--port", "0",
                               "--batch-size", "2", "--batch-wait-ms", "5", "--threads", "1", "--dtype", "float32",
                               "--served-model-name", "tiny-served"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        line = server.stdout.readline()
        assert " at " in line, server.stderr.read()[-3000:]
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url.rstrip("/") + "/models", timeout=30) as response:
            assert [m["id"] for m in json.load(response)["data"]] == ["tiny-served"]  # the name, not the path
        [reply] = OpenAIChatBackend(base_url=url, model="tiny-served").chat([ask("hello", 3)])
        assert reply.ok and reply.completion_tokens > 0
    finally:
        server.send_signal(signal.SIGTERM)  # as Ctrl-C: a clean stop with a summary line
        _, err = server.communicate(timeout=60)
    assert server.returncode == 0 and "stopped after 1 requests" in err


def test_hllm_build_creatives_random_ads_and_restart(tmp_path):
    data = write_tiny_dataset(tmp_path / "data", n_users=3).parent
    (tmp_path / "b.yaml").write_text("text_fields: [title, genre]\n")
    out = tmp_path / "tiny.creative"
    env = {**subprocess_env(tmp_path), "OPENAI_API_KEY": "sk-test"}
    backend = ScriptedBackend()
    with ChatServer(backend, max_batch=4) as server:
        args = ["hllm-build-creatives", "--dataset", "tiny", "--data-path", data, "--config-files",
                tmp_path / "b.yaml", "--users", "0", "--ads", "random", "--ads-per-user", "2", "--seed", "3",
                "--out", out, "--no-progress", "--backend", "openai", "--model", "scripted", "--base-url",
                server.url]
        _run(args, tmp_path, env)
        first, asked = out.read_text(), len(backend.prompts)
        _run(args, tmp_path, env)  # everything finished: the journal answers, nothing is asked
        assert len(backend.prompts) == asked
        _run([*args, "--restart"], tmp_path, env)  # the journal is discarded: every pair asked again
        assert len(backend.prompts) == 2 * asked and out.read_text() == first
    summary = json.loads(Path(paths_for(str(out))["summary"]).read_text())
    assert summary["pairs"] == 6
    clicks = {}
    for line in (data / "tiny" / "tiny.inter").read_text().splitlines()[1:]:
        user, item, _ = line.split("\t")
        clicks.setdefault(user, set()).add(item)
    rows = [line.split("\t") for line in first.splitlines()[1:]]
    assert rows and all(item not in clicks[user] for user, item, *_ in rows)  # random = never clicked


def test_hllm_eval_script_references_metrics_and_judge_against(tmp_path):
    """No dataset: the file's own rows; --references overrides the rows' references, and
    ROUGE-L is the rouge-score package's (stemmed F1, mean over pairs)."""
    pairs = [("u1", "a1", "Juice for fans", "Fresh juice for fans", "Juice"),
             ("u2", "a1", "Juice for runners", "Juice made for runners", "Juice"),
             ("u3", "a2", "Green tea deal", "Green tea, now cheaper", "Tea")]
    predictions, references, other = tmp_path / "p.jsonl", tmp_path / "r.jsonl", tmp_path / "o.jsonl"
    predictions.write_text("".join(json.dumps({"user_id": u, "item_id": i, "generated": g, "reference": "ignored"})
                                   + "\n" for u, i, g, _, _ in pairs))
    references.write_text("".join(json.dumps({"user": u, "item": i, "reference": r}) + "\n"
                                  for u, i, _, r, _ in pairs))
    other.write_text("".join(json.dumps({"user_id": u, "item_id": i, "generated": o}) + "\n"
                             for u, i, _, _, o in pairs))
    with ChatServer(RuleJudge(), max_batch=4) as server:
        out = _run(["hllm-eval", "--predictions", predictions, "--name", "mine", "--references", references,
                    "--compare", f"{other}:plain", "--metrics", "rouge-l,bleu", "--judge", "openai",
                    "--judge-model", "rule", "--judge-base-url", server.url, "--judge-against", "plain",
                    "--judge-pairs", "0", "--out", tmp_path / "eval", "--no-progress"], tmp_path)
    report = json.loads((tmp_path / "eval.json").read_text())
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    expected = sum(scorer.score(r, g)["rougeL"].fmeasure for _, _, g, r, _ in pairs) / len(pairs)
    assert report["systems"]["mine"]["rouge-l"] == round(expected, 4)
    assert set(report["systems"]["mine"]) == {"rouge-l", "bleu"}  # only the asked metrics
    assert report["judge"]["system_2"] == "plain" and report["judge"]["good"] == 1  # only u1's title says "fans"
    assert f"{round(expected, 4)}" in out.stdout + (tmp_path / "eval.md").read_text()


def test_hllm_generate_script_backend_threshold_and_per_user(tiny_creative_data, tmp_path):
    run_recbole(model="HLLMCreator", dataset="tiny", config_dict=tiny_creator_config(tiny_creative_data))
    checkpoint = next((tiny_creative_data / "saved").glob("HLLMCreator-*.pth"))
    common = ["hllm-generate", "--checkpoint", checkpoint, "--users", "u1,u2,u3,u4", "--items", "101,102",
              "--no-progress"]
    _run([*common, "--clusters", "2", "--backend", "minibatch", "--threshold", "1e9", "--out", "all.jsonl"], tmp_path)
    rows = _jsonl(tmp_path / "all.jsonl")
    assert len(rows) == 8 and all(r["pruned"] and r["generated"] == r["original"] for r in rows)
    assert {r["cluster"] for r in rows} <= {0, 1}  # two clusters
    _run([*common, "--per-user", "--threshold=-1e9", "--out", "each.jsonl"], tmp_path)
    rows = _jsonl(tmp_path / "each.jsonl")
    assert len(rows) == 8 and not any(r["pruned"] for r in rows)
    assert len({r["cluster"] for r in rows}) == 4  # one "cluster" per user
    assert not os.path.exists(tmp_path / "each.jsonl.parts.jsonl")
