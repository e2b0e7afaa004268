"""The same seed gives the same run whether the package's caches are cold (first use) or
warm: two fresh processes share one cache folder, the first fills it, the second reads it."""
import json

import yaml

from conftest import run_python, tiny_creator_config



def test_cold_and_warm_caches_give_the_same_titles(tiny_creative_data, tmp_path):
    titles = []
    for run in ("cold", "warm"):
        settings = tiny_creator_config(tiny_creative_data, checkpoint_dir=str(tmp_path / run),
                                       item_embedding_cache=True)
        cfg = tmp_path / f"{run}.yaml"
        cfg.write_text(yaml.safe_dump(settings))
        code = ("import json, recbole_hllm\n"
                "from recbole.quick_start import run_recbole\n"
                f"r = run_recbole(model='HLLMCreator', dataset='tiny', config_file_list=[{str(cfg)!r}])\n"
                "print('RESULT', json.dumps({k: float(v) for k, v in r['test_result'].items()}))\n")
        out = run_python(code, tmp_path)  # RECBOLE_HLLM_CACHE: tmp_path/cache, shared by both runs
        assert out.returncode == 0, out.stderr[-3000:]
        [titles_file] = (tmp_path / run).glob("HLLMCreator-*-titles.jsonl")
        result = next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))
        titles.append(([json.loads(line)["generated"] for line in titles_file.read_text().splitlines()], result))
    assert (tmp_path / "cache" / "item_embeddings").is_dir()  # the second run read the first one's table
    assert titles[0][0] and titles[0] == titles[1]
