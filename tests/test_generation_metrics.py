"""Generation metrics on fixed examples, checked against rouge-score and by hand."""
import pytest
from rouge_score import rouge_scorer

from recbole_hllm.evaluation.generation import GroundTruth, TitleRecord, attach_truth, score_titles


@pytest.fixture
def truth(tmp_path):
    (tmp_path / "d.truth").write_text("user_id:token\titem_id:token\tfacet:token\nu1\ta1\thealth\nu2\ta1\tprice\n")
    (tmp_path / "d.sellingpoint").write_text("item_id:token\tfacet:token\tphrase:token_seq\n"
                                             "a1\thealth\t0 sugar\na1\tprice\thalf price today\n")
    (tmp_path / "d.facet").write_text("facet:token\tkeyword:token_seq\nhealth\thealth\nhealth\tsugar\n"
                                      "price\tprice\nprice\t$10\ntech\tbluetooth\n")
    return GroundTruth.load(str(tmp_path), "d")


def test_ground_truth_and_keyword_matching(truth):
    assert truth.pair_facet[("u1", "a1")] == "health" and truth.ad_facets["a1"] == {"health", "price"}
    assert truth.facets_in("Zero SUGAR tea, under $10") == {"health", "price"}
    assert truth.facets_in("sugary prices") == set()  # whole words only
    assert truth.facets_in("Bluetooth tea") == {"tech"}


def test_symbol_keywords_match_next_to_digits(tmp_path):
    """``$`` and ``% off`` (ads-synth's price keywords) have no word boundary on a symbol
    side: "under $50" and "30% off" are price titles, as the data generator counts them.
    (The metric's old rule asked for a boundary everywhere and missed them.)"""
    (tmp_path / "d.truth").write_text("user_id:token\titem_id:token\tfacet:token\n")
    (tmp_path / "d.sellingpoint").write_text("item_id:token\tfacet:token\tphrase:token_seq\n")
    (tmp_path / "d.facet").write_text("facet:token\tkeyword:token_seq\nprice\t$\nprice\t% off\neco\teco\n")
    truth = GroundTruth.load(str(tmp_path), "d")
    assert truth.facets_in("Shoes, under $50") == {"price"}
    assert truth.facets_in("30% off today") == {"price"}
    assert truth.facets_in("economy class") == set()  # a letter side still needs its boundary


def test_every_shipped_reference_title_hits_its_facet():
    """The shipped ads-synth titles are written to name their user's facet: the metric
    must find it in every one (the old rule found 95.9%)."""
    import csv
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "dataset" / "ads-synth"
    truth = GroundTruth.load(str(folder), "ads-synth")
    with open(folder / "ads-synth.creative", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    missed = [(u, i, title) for u, i, title, *_ in rows if truth.pair_facet[(u, i)] not in truth.facets_in(title)]
    assert len(rows) == 4000 and missed == []


def test_interest_hit_off_facet_and_rouge(truth):
    records = [
        TitleRecord("u1", "a1", generated="Leaf Tea: 0 sugar", reference="Leaf Tea: 0 sugar"),
        TitleRecord("u2", "a1", generated="Leaf Tea with Bluetooth", reference="Leaf Tea, half price today"),
    ]
    attach_truth(records, truth)
    scores = score_titles(records, ["rouge-l", "interest_hit", "off_facet"], truth)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    expected = (1.0 + scorer.score("Leaf Tea, half price today", "Leaf Tea with Bluetooth")["rougeL"].fmeasure) / 2
    assert scores["rouge-l"] == pytest.approx(expected, abs=1e-4)
    assert scores["interest_hit"] == 0.5  # u1 gets its health point, u2 not its price point
    assert scores["off_facet"] == 0.5  # "Bluetooth" claims tech, which ad a1 does not have


def test_metrics_without_ground_truth_and_edge_cases():
    records = [TitleRecord("u", "i", generated="", reference="Tea"), TitleRecord("u", "i", generated="Té ✓", reference="Té ✓")]
    scores = score_titles(records, ["rouge-l", "interest_hit", "off_facet"], None)
    assert set(scores) == {"rouge-l"}  # facet metrics need ground truth: left out, not faked
    assert scores["rouge-l"] == pytest.approx(0.5)  # empty generation scores 0, identical 1
    assert score_titles([], ["rouge-l"], None) == {}
    with pytest.raises(ValueError, match="unknown generation metrics"):
        score_titles(records, ["bleu-9"], None)


def test_titles_per_ad_counts_distinct_titles_of_shared_ads():
    records = [TitleRecord("u1", "a1", generated="Tea: 0 sugar"), TitleRecord("u2", "a1", generated="tea: 0 sugar "),
               TitleRecord("u3", "a1", generated="Tea, half price"), TitleRecord("u1", "a2", generated="Lamp"),
               TitleRecord("u2", "a2", generated="Lamp"), TitleRecord("u1", "a3", generated="only one user")]
    assert score_titles(records, ["titles_per_ad"], None) == {"titles_per_ad": 1.5}  # a1: 2, a2: 1; a3 left out
    assert score_titles(records[-1:], ["titles_per_ad"], None) == {}
