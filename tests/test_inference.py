"""Cluster-and-prune inference on tiny random models."""
import json
import warnings

import numpy as np
import pytest
import torch
from recbole.quick_start import run_recbole

from recbole_hllm.cli.generate import main as generate_main
from recbole_hllm.inference.clustered import InferenceSettings, personalise
from recbole_hllm.inference.clustering import ClusteringError, cluster_users
from recbole_hllm.inference.pruning import PruneRule

from conftest import tiny_config, tiny_creator_config
from test_creator import build


def test_clusters_follow_the_data_and_centroids_are_member_means():
    rng = np.random.default_rng(0)
    centres = np.array([[8.0, 0, 0], [0, 8.0, 0], [0, 0, 8.0]])
    truth = np.repeat(np.arange(3), 20)
    vectors = centres[truth] + rng.normal(scale=0.3, size=(60, 3))
    clusters = cluster_users(vectors, 3, metric="dot", seed=1)
    # the same partition as the planted one, up to cluster numbering
    assert len({(t, c) for t, c in zip(truth, clusters.assignment)}) == 3
    for c in range(3):
        assert np.allclose(clusters.centroids[c], vectors[clusters.assignment == c].mean(axis=0), atol=1e-5)


def test_cosine_clustering_ignores_the_scale_of_u():
    rng = np.random.default_rng(1)
    directions = np.repeat(np.eye(4)[:2], 10, axis=0) + rng.normal(scale=0.05, size=(20, 4))
    scaled = directions * rng.uniform(0.1, 10, size=(20, 1))
    clusters = cluster_users(scaled, 2, metric="cosine", seed=0)
    assert len(set(clusters.assignment[:10])) == 1 and len(set(clusters.assignment[10:])) == 1


def test_more_clusters_than_users_is_clamped_with_a_warning():
    with pytest.warns(UserWarning, match="more than the 5 users"):
        clusters = cluster_users(np.random.default_rng(0).normal(size=(5, 3)), 50, seed=0)
    assert clusters.k == 5 and sorted(clusters.assignment) == [0, 1, 2, 3, 4]


def test_bad_clustering_settings_are_named():
    with pytest.raises(ClusteringError, match="metric 'l1'"):
        cluster_users(np.zeros((3, 2)), 2, metric="l1")
    with pytest.raises(ClusteringError, match="no users"):
        cluster_users(np.zeros((0, 2)), 2)


def test_pruning_keeps_exactly_what_the_rule_says():
    scores = np.array([[0.9, 0.1, 0.5, 0.5], [-1.0, -2.0, 3.0, 0.0]])
    assert PruneRule().keep(scores).all()
    assert PruneRule(top_m=2).keep(scores).tolist() == [[True, False, True, False], [False, False, True, True]]
    assert PruneRule(threshold=0.5).keep(scores).tolist() == [[True, False, True, True], [False, False, True, False]]
    assert PruneRule(top_m=1, threshold=1.0).keep(scores).tolist() == [[False] * 4, [False, False, True, False]]
    with pytest.raises(ValueError, match="top_m = 0"):
        PruneRule(top_m=0)


@pytest.fixture
def tiny_creator(tiny_creative_data):
    model, _, _, test = build(tiny_creative_data)
    model.eval()
    feat = test.dataset.inter_feat
    histories = {int(u): feat["item_id_list"][r, : int(feat["item_length"][r])].tolist()
                 for r, u in enumerate(feat["user_id"].tolist())}
    return model, histories


def _settings(**kw):
    return InferenceSettings(show_progress=False, batch_size=8, **kw)


def test_clustered_titles_are_complete_shared_per_cluster_and_deterministic(tiny_creator):
    model, histories = tiny_creator
    users, items = sorted(histories), [3, 5, 7]
    pairs = [(u, i) for u in users for i in items]
    result = personalise(model, histories, pairs, _settings(clusters=4, seed=3), max_len=10)
    assert [(r["user"], r["item"]) for r in result.rows] == pairs  # every pair, in order
    assert result.generations == result.clusters.k * len(items)  # one per (cluster, ad)
    by_key = {}
    for row in result.rows:
        assert by_key.setdefault((row["cluster"], row["item"]), row["title"]) == row["title"]
    assert sum(c["size"] for c in result.summary) == len(users)
    again = personalise(model, histories, pairs, _settings(clusters=4, seed=3), max_len=10)
    assert again.rows == result.rows


def test_the_centroid_is_what_the_creative_llm_sees(tiny_creator):
    """Centroids live in U space and go through the configured user conditioning (the
    per-layer prefix by default), like any U."""
    model, histories = tiny_creator
    assert model.user_to_creative.mode == "prefix"
    users = sorted(histories)
    pairs = [(u, 4) for u in users]
    result = personalise(model, histories, pairs, _settings(clusters=3), max_len=10)
    centroids = torch.from_numpy(result.clusters.centroids)
    expected, _ = model.generate_from_user_vectors(centroids, [4] * len(centroids), **model.decoding_settings)
    for row in result.rows:
        assert row["title"] == expected[row["cluster"]]


def test_per_user_mode_and_pruning_flags(tiny_creator):
    model, histories = tiny_creator
    users = sorted(histories)[:6]
    pairs = [(u, i) for u in users for i in (2, 6, 9)]
    per_user = personalise(model, histories, pairs, _settings(clusters=0), max_len=10)
    assert per_user.generations == len(pairs) and per_user.clusters.k == len(users)
    pruned = personalise(model, histories, pairs, _settings(clusters=0, prune=PruneRule(top_m=1)), max_len=10)
    assert pruned.generations == len(users)
    for row in pruned.rows:
        best = max((r for r in pruned.rows if r["user"] == row["user"]), key=lambda r: r["score"])
        assert row["pruned"] == (row is not best)
        if row["pruned"]:
            assert row["title"] == model.original_titles[row["item"]]


def test_an_interrupted_run_resumes_from_its_parts_file(tiny_creator, tmp_path):
    model, histories = tiny_creator
    pairs = [(u, i) for u in sorted(histories) for i in (1, 2)]
    parts = str(tmp_path / "parts.jsonl")
    first = personalise(model, histories, pairs, _settings(clusters=5), 10, parts, fingerprint="a")
    lines = open(parts).read().splitlines()
    open(parts, "w").write("\n".join(lines[:4]) + "\n" + lines[4][:10])  # a crash mid-line
    resumed = personalise(model, histories, pairs, _settings(clusters=5), 10, parts, fingerprint="a")
    assert resumed.generations == first.generations - 4 and resumed.rows == first.rows
    other = personalise(model, histories, pairs, _settings(clusters=5), 10, parts, fingerprint="b")
    assert other.generations == first.generations  # other settings never reuse those titles


def test_empty_ad_list_is_a_clear_error(tiny_creator):
    model, histories = tiny_creator
    with pytest.raises(ValueError, match="ad list is empty"):
        personalise(model, histories, [], _settings(), max_len=10)


def test_generate_cli_clusters_and_refuses_other_models(tiny_creative_data, tmp_path, capsys):
    run_recbole(model="HLLMCreator", dataset="tiny", config_dict=tiny_creator_config(tiny_creative_data))
    checkpoint = next((tiny_creative_data / "saved").glob("HLLMCreator-*.pth"))
    out = tmp_path / "titles.jsonl"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = generate_main(["--checkpoint", str(checkpoint), "--items", "101,102", "--clusters", "3",
                              "--top-m", "1", "--out", str(out), "--no-progress"])
    assert code == 0
    rows = [json.loads(line) for line in open(out)]
    assert len(rows) == 2 * len({r["user"] for r in rows}) and sum(not r["pruned"] for r in rows) >= 1
    assert {"user", "item", "cluster", "score", "pruned", "generated"} <= set(rows[0])
    summary = json.load(open(f"{out}.clusters.json"))
    assert sum(c["size"] for c in summary) == len({r["user"] for r in rows})
    assert not (tmp_path / "titles.jsonl.parts.jsonl").exists()
    assert generate_main(["--checkpoint", str(checkpoint), "--items", ",", "--no-progress"]) == 2
    assert "--items is empty" in capsys.readouterr().err

    run_recbole(model="HLLM", dataset="tiny", config_dict=tiny_config(tiny_creative_data, epochs=1))
    hllm = next((tiny_creative_data / "saved").glob("HLLM-*.pth"))
    assert generate_main(["--checkpoint", str(hllm), "--no-progress"]) == 2
    assert "needs an HLLMCreator checkpoint" in capsys.readouterr().err
