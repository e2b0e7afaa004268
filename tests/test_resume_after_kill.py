"""Long jobs killed with SIGKILL mid-run and run again lose no finished row, redo none,
and end with exactly the output of an uninterrupted run.

Each job runs in a subprocess that the test kills (SIGKILL: no handler, no flush, no
cleanup) once its journal / parts file holds some finished rows but not all."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from recbole.quick_start import run_recbole

from recbole_hllm.chat.openai_server import ChatServer
from recbole_hllm.construction.builder import paths_for

from conftest import subprocess_env, tiny_creator_config, write_tiny_dataset
from test_construction import ScriptedBackend

BIN = Path(sys.executable).parent


def _start(args, tmp_path):
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env=subprocess_env(tmp_path))


def _kill_when(process, path: Path, count, at_least: int, timeout: float = 180) -> int:
    """SIGKILL ``process`` as soon as ``count(path) >= at_least``; returns that count."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"finished before it could be killed:\n{process.stderr.read()[-3000:]}")
        done = count(path) if path.exists() else 0
        if done >= at_least:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return done
        time.sleep(0.02)
    process.kill()
    raise AssertionError("never reached the kill point")


def _lines(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by the kill
            pass
    return rows


class SlowScriptedBackend(ScriptedBackend):
    """The scripted answers, a tenth of a second per call: time to kill the client mid-run."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()

    def chat(self, requests):
        time.sleep(0.1)
        with self.lock:
            return super().chat(requests)


def _build_args(tmp_path, data, out, url):
    config = tmp_path / "build.yaml"
    config.write_text("text_fields: [title, genre]\n")
    return [str(BIN / "hllm-build-creatives"), "--dataset", "tiny", "--data-path", str(data), "--config-files",
            str(config), "--users", "0", "--ads-per-user", "2", "--chunk", "1", "--out", str(out),
            "--no-progress", "--backend", "openai", "--model", "scripted", "--base-url", url, "--concurrency", "1"]


def test_build_creatives_resumes_after_sigkill(tmp_path):
    data = write_tiny_dataset(tmp_path / "data", n_users=6).parent
    backend = SlowScriptedBackend()
    env = {**subprocess_env(tmp_path), "OPENAI_API_KEY": "sk-test"}
    with ChatServer(backend, max_batch=1) as server:
        whole = tmp_path / "whole" / "tiny.creative"
        whole.parent.mkdir()
        run = subprocess.run(_build_args(tmp_path, data, whole, server.url), capture_output=True, text=True,
                             cwd=tmp_path, env=env, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        pairs = json.loads(Path(paths_for(str(whole))["summary"]).read_text())["pairs"]

        out = tmp_path / "killed" / "tiny.creative"
        out.parent.mkdir()
        journal = Path(paths_for(str(out))["journal"])
        rows = lambda path: sum(r.get("kind") == "row" for r in _lines(path))  # noqa: E731
        process = subprocess.Popen(_build_args(tmp_path, data, out, server.url), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
        _kill_when(process, journal, rows, at_least=4)
        assert not out.exists()  # killed before the end: no final file yet
        finished = rows(journal)
        assert 4 <= finished < pairs

        backend.prompts.clear()
        rerun = subprocess.run(_build_args(tmp_path, data, out, server.url), capture_output=True, text=True,
                               cwd=tmp_path, env=env, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
    rewrites = [p for p in backend.prompts if "Rewrite the ad title" in p and "could not be used" not in p]
    assert len(rewrites) == pairs - finished  # only the unfinished pairs were asked again
    assert out.read_text() == whole.read_text()  # the same rows as the uninterrupted run


SLOW_GENERATE = (
    "import sys, time\n"
    "from recbole_hllm.model.hllm_creator import HLLMCreator\n"
    "original = HLLMCreator.generate_from_user_vectors\n"
    "def slow(self, *args, **kwargs):\n"
    "    time.sleep(0.15)\n"
    "    return original(self, *args, **kwargs)\n"
    "HLLMCreator.generate_from_user_vectors = slow\n"
    "from recbole_hllm.cli.generate import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_generate_resumes_after_sigkill(tmp_path, tiny_creative_data):
    run_recbole(model="HLLMCreator", dataset="tiny", config_dict=tiny_creator_config(tiny_creative_data))
    checkpoint = next((tiny_creative_data / "saved").glob("HLLMCreator-*.pth"))
    args = ["--checkpoint", str(checkpoint), "--users", "u1,u2,u3,u4,u5,u6", "--items", "101,102",
            "--batch-size", "1", "--no-progress"]
    whole = tmp_path / "whole.jsonl"
    run = subprocess.run([sys.executable, "-c", SLOW_GENERATE, *args, "--out", str(whole)], capture_output=True,
                         text=True, cwd=tmp_path, env=subprocess_env(tmp_path), timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    total = len(_lines(whole))
    assert total == 6 * 2

    out = tmp_path / "killed.jsonl"
    parts = Path(f"{out}.parts.jsonl")
    process = _start([sys.executable, "-c", SLOW_GENERATE, *args, "--out", str(out)], tmp_path)
    finished = _kill_when(process, parts, lambda p: len(_lines(p)), at_least=5)
    assert not out.exists()
    kept = len(_lines(parts))
    assert kept >= finished and kept < total
    rerun = subprocess.run([sys.executable, "-c", SLOW_GENERATE, *args, "--out", str(out)], capture_output=True,
                           text=True, cwd=tmp_path, env=subprocess_env(tmp_path), timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"({total - kept} generations," in rerun.stderr  # only the unfinished ones were generated
    assert out.read_text() == whole.read_text()
    assert not os.path.exists(parts)  # the parts file goes once the table is written
