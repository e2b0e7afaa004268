"""The generation evaluation suite: values against the reference packages, edge cases,
the pairwise judge's order-swap logic and cache, and hllm-eval end to end."""
from __future__ import annotations

import json

import pytest
from conftest import write_tiny_dataset

from recbole_hllm.chat.backend import ChatBackend, ChatReply
from recbole_hllm.evaluation.generation import ALL_METRICS, TitleRecord, score_titles
from recbole_hllm.evaluation.judge import JudgeCase, PairwiseJudge, outcome

AD = "Velaform Lite Orange Juice, category: drinks, description: 0 sugar, rich in vitamins"


def record(generated, reference="Velaform Lite Orange Juice with 0 sugar", item="a1", user="u1", history=None):
    return TitleRecord(user=user, item=item, generated=generated, reference=reference,
                       original="Velaform Lite Orange Juice", ad_text=AD,
                       history=["Green tea, no sugar", "Running shoes"] if history is None else history)


RECORDS = [record("Velaform Lite Orange Juice: 0 sugar, rich in vitamins"),
           record("Velaform Lite Orange Juice for busy mornings", user="u2"),
           record("Velaform Lite Orange Juice for busy mornings", user="u3", item="a2"),
           record("Ünïcode Orange Juice ☀", user="u4", item="a2", history=[])]


def test_overlap_metrics_equal_the_reference_packages():
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = score_titles(RECORDS, ["rouge-1", "rouge-2", "rouge-l", "bleu"], None)
    for name, kind in (("rouge-1", "rouge1"), ("rouge-2", "rouge2"), ("rouge-l", "rougeL")):
        expected = sum(scorer.score(r.reference, r.generated)[kind].fmeasure for r in RECORDS) / len(RECORDS)
        assert scores[name] == round(expected, 4)
    bleu = sacrebleu.corpus_bleu([r.generated for r in RECORDS], [[r.reference for r in RECORDS]]).score
    assert scores["bleu"] == round(bleu, 4)


def test_diversity_metrics_on_hand_counted_titles():
    titles = [record("a b c", item="x"), record("a b d", item="x"), record("a b c", item="y")]
    scores = score_titles(titles, ["distinct-1", "distinct-2", "titles_per_ad"], None)
    assert scores["distinct-1"] == round(4 / 9, 4)  # a b c d out of 9 unigrams
    assert scores["distinct-2"] == round(3 / 6, 4)  # (a b) (b c) (b d) out of 6 bigrams
    assert scores["titles_per_ad"] == 2.0
    same = [record("Velaform Lite Orange Juice deal"), record("Velaform Lite Orange Juice deal", user="u2")]
    assert score_titles(same, ["self_bleu"], None)["self_bleu"] == 100.0


def test_personalisation_scores_the_closest_click_and_skips_users_without_history():
    close = record("Green tea, no sugar", history=["Green tea, no sugar", "Running shoes"])
    scores = score_titles([close, record("x", history=[])], ["pc_max", "pc_avg", "pc_max_tok", "pc_avg_tok"], None)
    assert scores["pc_max"] == pytest.approx(1.0, abs=1e-4)  # only the user with a history counts
    assert scores["pc_max_tok"] == 1.0 and 0 < scores["pc_avg_tok"] < 1
    assert scores["pc_avg"] < scores["pc_max"]
    assert score_titles([record("x", history=[])], ["pc_avg"], None) == {}


def test_factuality_counts_supported_words():
    scores = score_titles([record("Velaform Lite Orange Juice, 0 sugar"), record("Velaform Lite Orange Juice, 100% organic")],
                          ["fact_support", "fact_pass"], None)
    # second title: 100% and organic unsupported out of 6 checkable words
    assert scores["fact_support"] == round((1 + 4 / 6) / 2, 4)
    assert scores["fact_pass"] == 0.5


def test_every_metric_survives_empty_identical_and_unicode_titles():
    edge = [record(""), record(""), record("Ünïcode ☀ Juice", user="u3", history=[])]
    scores = score_titles(edge, ALL_METRICS, None)
    assert scores["distinct-1"] == 1.0 and scores["titles_per_ad"] == 2.0  # the two empty titles are one
    assert all(isinstance(v, float) for v in scores.values())
    assert "interest_hit" not in scores  # needs ground truth


# --- pairwise judge --------------------------------------------------------------
@pytest.mark.parametrize("first, second, expected", [
    ("A", "B", "good"), ("B", "A", "bad"), ("A", "A", "same"), ("B", "B", "same"),
    ("same", "B", "same"), (None, "B", "same"), ("A", None, "same"),
])
def test_judge_outcome_needs_two_agreeing_orders(first, second, expected):
    assert outcome(first, second) == expected


class RuleJudge(ChatBackend):
    """A deterministic judge function: prefers the title containing ``liked``; with
    ``position_bias`` it always answers "A" (a judge that only looks at the order)."""

    name = "rule-judge"

    def __init__(self, liked="fans", position_bias=False):
        super().__init__()
        self.liked, self.position_bias, self.calls = liked, position_bias, 0

    def chat(self, requests):
        replies = []
        for request in requests:
            self.calls += 1
            prompt = request.messages[-1]["content"]
            a = prompt.split("Title A: ")[1].split("\n")[0]
            b = prompt.split("Title B: ")[1].split("\n")[0]
            choice = "A" if self.position_bias else "A" if self.liked in a else "B" if self.liked in b else "same"
            replies.append(ChatReply(text=json.dumps({"preferred": choice, "reason": "rule"})))
        return replies


def _cases():
    return [JudgeCase("u1", "a1", AD, ["Green tea"], "Juice for fans", "Juice"),
            JudgeCase("u2", "a1", AD, [], "Juice", "Juice for fans"),
            JudgeCase("u3", "a2", AD, [], "Juice deal", "Juice offer"),
            JudgeCase("u4", "a2", AD, [], "Same title", "same  TITLE")]


def test_judge_counts_good_same_bad_and_caches(tmp_path):
    backend = RuleJudge()
    cache = str(tmp_path / "cache.jsonl")
    result = PairwiseJudge(backend, cache_path=cache).judge(_cases(), progress=False)
    assert (result.good, result.same, result.bad) == (1, 2, 1) and result.adv == 0.0
    assert backend.calls == 6  # identical titles are not asked; the rest twice
    again = RuleJudge()
    rerun = PairwiseJudge(again, cache_path=cache).judge(_cases(), progress=False)
    assert again.calls == 0 and rerun.cached_calls == 6 and rerun.as_dict() == {**result.as_dict(),
                                                                                 "cached_calls": 6, "new_calls": 0}


def test_a_position_biased_judge_yields_only_same():
    result = PairwiseJudge(RuleJudge(position_bias=True)).judge(_cases(), progress=False)
    assert (result.good, result.same, result.bad) == (0, 4, 0)


# --- hllm-eval --------------------------------------------------------------------
def test_hllm_eval_scores_systems_and_judges_over_http(tmp_path, capsys):
    from recbole_hllm.chat.openai_server import ChatServer
    from recbole_hllm.cli.evaluate import main
    from recbole_hllm.construction.source import load_source

    write_tiny_dataset(tmp_path, n_users=4)
    config = tmp_path / "tiny.yaml"
    config.write_text("text_fields: [title, genre]\n")
    source = load_source("tiny", str(tmp_path), config_dict={"text_fields": ["title", "genre"]})
    pairs = [(u, clicks[-1]) for u, clicks in source.histories.items()]
    model = tmp_path / "model.jsonl"
    model.write_text("".join(json.dumps({"user": u, "item": i, "generated": f"{source.titles[i]} for fans",
                                         "reference": f"{source.titles[i]} for you"}) + "\n" for u, i in pairs))
    ablation = tmp_path / "ablation.jsonl"
    ablation.write_text("".join(json.dumps({"user": u, "item": i, "generated": source.titles[i]}) + "\n"
                                for u, i in pairs))
    out = tmp_path / "report" / "eval"
    args = ["--predictions", str(model), "--name", "model", "--compare", f"{ablation}:no-U", "--dataset", "tiny",
            "--data-path", str(tmp_path), "--config-files", str(config), "--out", str(out), "--no-progress"]
    with ChatServer(RuleJudge(), max_batch=4) as server:
        code = main([*args, "--judge", "openai", "--judge-model", "rule", "--judge-base-url", server.url])
    assert code == 0, capsys.readouterr().err
    report = json.loads(open(f"{out}.json").read())
    assert list(report["systems"]) == ["model", "no-U", "original title", "reference"]
    assert report["systems"]["no-U"]["rouge-l"] == report["systems"]["original title"]["rouge-l"]
    assert report["systems"]["reference"]["rouge-l"] == 1.0
    assert report["judge"]["good"] == 4 and report["judge"]["adv"] == 1.0
    assert "| model |" in open(f"{out}.md").read()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user": "u1"}\n')
    assert main(["--predictions", str(bad), "--dataset", "tiny", "--data-path", str(tmp_path),
                 "--out", str(out)]) == 2
    assert "bad.jsonl:1: missing item (or item_id), generated" in capsys.readouterr().err
