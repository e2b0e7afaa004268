"""The synthetic ad-creative dataset: reproducible, well-formed, and its ground truth holds.

Small versions are generated into tmp_path; the default-size dataset is built once per
module (about a second) for the statistical checks and the committed-copy check.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from statistics import median

import pytest

from recbole_hllm.data import synthetic_ads as sa

SMALL = {"n_users": 40, "n_ads": 30, "min_clicks": 6, "max_clicks": 12}
COMMITTED = Path(__file__).resolve().parents[1] / "dataset" / "ads-synth"
HEADERS = {
    "inter": ["user_id:token", "item_id:token", "timestamp:float"],
    "item": ["item_id:token", "title:token_seq", "description:token_seq", "category:token"],
    "creative": ["user_id:token", "item_id:token", "title:token_seq", "profile:token_seq"],
    "truth": ["user_id:token", "item_id:token", "facet:token"],
    "sellingpoint": ["item_id:token", "facet:token", "phrase:token_seq"],
    "facet": ["facet:token", "keyword:token_seq"],
}


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def read_table(folder: Path, suffix: str) -> list[dict[str, str]]:
    """Parse one atomic file strictly: header as expected, every row the same width."""
    text = (folder / f"{folder.name}.{suffix}").read_text(encoding="utf-8")
    assert "\r" not in text and text.endswith("\n")
    header, *lines = text[:-1].split("\n")
    assert header.split("\t") == HEADERS[suffix]
    names = [column.split(":")[0] for column in HEADERS[suffix]]
    rows = []
    for line in lines:
        fields = line.split("\t")
        assert len(fields) == len(names), line
        for field in fields:
            assert field and field == field.strip() and "  " not in field, line
        rows.append(dict(zip(names, fields)))
    return rows


@pytest.fixture
def small(tmp_path) -> Path:
    sa.generate(tmp_path, name="small", seed=7, **SMALL)
    return tmp_path / "small"


@pytest.fixture(scope="module")
def default_data() -> sa.SyntheticAds:
    return sa.build()


# ------------------------------------------------------------ reproducibility

def test_same_seed_regenerates_byte_identical_files(tmp_path):
    sa.generate(tmp_path / "a", name="x", seed=3, **SMALL)
    sa.generate(tmp_path / "b", name="x", seed=3, **SMALL)
    first, second = file_bytes(tmp_path / "a" / "x"), file_bytes(tmp_path / "b" / "x")
    assert sorted(first) == ["README.md"] + sorted(f"x.{s}" for s in HEADERS)
    assert first == second


def test_different_seed_gives_different_files(tmp_path):
    sa.generate(tmp_path / "a", name="x", seed=3, **SMALL)
    sa.generate(tmp_path / "b", name="x", seed=4, **SMALL)
    first, second = file_bytes(tmp_path / "a" / "x"), file_bytes(tmp_path / "b" / "x")
    for suffix in ("inter", "item", "creative", "truth", "sellingpoint"):
        assert first[f"x.{suffix}"] != second[f"x.{suffix}"], suffix


def test_committed_dataset_equals_a_fresh_default_generation(tmp_path):
    """Guards the README's regeneration command: defaults reproduce the committed bytes."""
    counts = sa.generate(tmp_path)
    assert file_bytes(tmp_path / "ads-synth") == file_bytes(COMMITTED)
    assert counts["users"] == 1000 and counts["ads"] == 300
    readme = (COMMITTED / "README.md").read_text(encoding="utf-8")
    assert "python -m recbole_hllm.data.synthetic_ads --out dataset --name ads-synth --seed 7\n" in readme


def test_cli_writes_the_dataset_and_prints_counts(tmp_path, capsys):
    counts = sa.main(["--out", str(tmp_path), "--name", "cli", "--seed", "5", "--users", "40",
                      "--ads", "30", "--min-clicks", "6", "--max-clicks", "12"])
    printed = capsys.readouterr().out
    assert f"users: {counts['users']}" in printed and counts["creative_rows"] == 160
    readme = (tmp_path / "cli" / "README.md").read_text(encoding="utf-8")
    assert ("--name cli --seed 5 --users 40 --ads 30 --min-clicks 6 --max-clicks 12"
            in readme)


@pytest.mark.parametrize("options", [{"min_clicks": 4}, {"min_clicks": 20, "max_clicks": 10},
                                     {"n_ads": 10}])
def test_impossible_options_are_refused(options):
    with pytest.raises(ValueError):
        sa.build(**{**SMALL, **options})


# ------------------------------------------------------------ lexicons

def test_facets_and_keywords():
    assert sa.FACETS == ("health", "price", "productivity", "fitness", "family",
                         "eco", "premium", "convenience", "style", "tech")
    for facet in sa.FACETS:
        keywords = sa.FACET_KEYWORDS[facet]
        assert keywords[0] == facet and len(set(keywords)) == len(keywords)
        assert all(k == k.lower() == k.strip() and "\t" not in k for k in keywords)


def test_every_phrase_hits_its_own_facet_and_no_other():
    for facet, by_kind in sa.FACET_PHRASES.items():
        for phrase in by_kind["consumable"] + by_kind["durable"]:
            assert sa.facets_in_text(phrase) == {facet}, phrase
    for facet in sa.FACETS:
        assert sa.facets_in_text(sa.PROFILE_LEADS[facet]) == {facet}
        assert sa.facets_in_text(sa.PROFILE_ALSO[facet]) == {facet}


def test_every_category_facet_has_phrases_for_its_kind():
    for name, category in sa.CATEGORIES.items():
        assert len(category.facets) >= 6, name
        for facet in category.facets:
            assert sa.FACET_PHRASES[facet][category.kind], (name, facet)
    for facet in sa.FACETS:
        assert sum(facet in c.facets for c in sa.CATEGORIES.values()) >= 5, facet


def test_facets_in_text_matches_whole_words_case_insensitively():
    assert sa.facets_in_text("Zenleaf Green Tea: 0 SUGAR") == {"health"}
    assert sa.facets_in_text("Novawave Smartwatch") == set()  # "smart" is not a word here
    assert sa.facets_in_text("unhealthy") == set()
    assert sa.facets_in_text("under $10, eco-friendly") == {"price", "eco"}
    assert sa.facets_in_text("post-workout boost, Bluetooth 5.3") == {"fitness", "tech"}


# ------------------------------------------------------------ files and ground truth

def test_files_parse_as_atomic_tables(small):
    tables = {suffix: read_table(small, suffix) for suffix in HEADERS}
    assert len(tables["item"]) == 30 and len({r["item_id"] for r in tables["item"]}) == 30
    assert len(tables["creative"]) == len(tables["truth"]) == 40 * sa.N_CREATIVES_PER_USER
    assert [(r["facet"], r["keyword"]) for r in tables["facet"]] == [
        (f, k) for f in sa.FACETS for k in sa.FACET_KEYWORDS[f]]
    by_user = defaultdict(list)
    for row in tables["inter"]:
        by_user[row["user_id"]].append((float(row["timestamp"]), row["item_id"]))
    assert list(by_user) == sorted(by_user)
    for clicks in by_user.values():
        times = [t for t, _ in clicks]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert 6 <= len(clicks) <= 12 and len({i for _, i in clicks}) == len(clicks)


def test_ads_state_two_to_four_distinct_selling_points_verbatim(small):
    items = {r["item_id"]: r for r in read_table(small, "item")}
    points = defaultdict(list)
    for row in read_table(small, "sellingpoint"):
        points[row["item_id"]].append(row)
    assert sorted(points) == sorted(items)
    for item_id, rows in points.items():
        facets = [r["facet"] for r in rows]
        assert 2 <= len(rows) <= 4 and len(set(facets)) == len(facets)
        assert set(facets) <= set(sa.CATEGORIES[items[item_id]["category"]].facets)
        for row in rows:
            assert row["phrase"] in items[item_id]["description"]
            assert sa.facets_in_text(row["phrase"]) == {row["facet"]}
        assert sa.facets_in_text(items[item_id]["title"]) == set()
        assert 2 <= len(items[item_id]["title"].split(" ")) <= 5


def test_ground_truth_is_consistent(small):
    data = sa.build(seed=7, **SMALL)
    users = {u.user_id: u for u in data.users}
    items = {r["item_id"]: r for r in read_table(small, "item")}
    phrase_of = {(r["item_id"], r["facet"]): r["phrase"] for r in read_table(small, "sellingpoint")}
    facets_of = defaultdict(set)
    for item_id, facet in phrase_of:
        facets_of[item_id].add(facet)
    clicks = defaultdict(list)
    for row in read_table(small, "inter"):
        clicks[row["user_id"]].append(row["item_id"])
    creatives = read_table(small, "creative")
    truths = read_table(small, "truth")
    assert [(c["user_id"], c["item_id"]) for c in creatives] == [
        (t["user_id"], t["item_id"]) for t in truths]
    creative_items = defaultdict(list)
    for creative, truth in zip(creatives, truths):
        user, item_id, facet = users[creative["user_id"]], creative["item_id"], truth["facet"]
        creative_items[user.user_id].append(item_id)
        assert facet == min(facets_of[item_id], key=user.final_ranking.index)
        phrase, original = phrase_of[(item_id, facet)], items[item_id]["title"]
        assert phrase in creative["title"] and original in creative["title"]
        # nothing beyond the original title, the phrase and a template's punctuation
        assert creative["title"].replace(original, "", 1).replace(phrase, "", 1) in {
            t.format(title="", phrase="") for t in sa.REFERENCE_TITLE_TEMPLATES}
        assert creative["profile"] == user.profile
        profile_facets = sa.facets_in_text(creative["profile"])
        assert profile_facets == set(user.final_ranking[:2])
        assert sa.FACET_KEYWORDS[user.final_ranking[0]][0] in creative["profile"].lower()
    assert sorted(creative_items) == sorted(clicks)
    for user_id, item_ids in creative_items.items():
        assert item_ids == clicks[user_id][-sa.N_CREATIVES_PER_USER:]


# ------------------------------------------------------------ statistics (default size)

def test_every_facet_and_category_is_well_represented(default_data):
    facet_counts = Counter(f for ad in default_data.ads for f in ad.facets)
    assert all(facet_counts[f] >= 0.2 * len(default_data.ads) for f in sa.FACETS), facet_counts
    assert set(Counter(ad.category for ad in default_data.ads).values()) == {20}
    truth_counts = Counter(c.facet for c in default_data.creatives)
    assert all(truth_counts[f] >= 0.05 * len(default_data.creatives) for f in sa.FACETS)
    assert 0.2 <= sum(u.drifts for u in default_data.users) / len(default_data.users) <= 0.4


def dominant_share_gap(data: sa.SyntheticAds, facet: str, clicked: tuple) -> float:
    """Share of ``clicked`` ads carrying ``facet`` minus that share in the catalogue."""
    ads = {ad.item_id: ad for ad in data.ads}
    in_clicks = sum(facet in ads[i].facets for i in clicked) / len(clicked)
    return in_clicks - sum(facet in ad.facets for ad in data.ads) / len(data.ads)


def test_clicks_follow_the_current_dominant_facet(default_data):
    late_gaps, early_gaps = [], []
    for user in default_data.users:
        half = len(user.clicked_items) // 2
        late_gaps.append(dominant_share_gap(default_data, user.final_ranking[0],
                                            user.clicked_items[half:]))
        if user.drifts:
            early_gaps.append(dominant_share_gap(default_data, user.early_ranking[0],
                                                 user.clicked_items[:half]))
    assert sum(g >= 0.15 for g in late_gaps) >= 0.8 * len(late_gaps)
    assert median(late_gaps) >= 0.25
    assert sum(g >= 0.15 for g in early_gaps) >= 0.8 * len(early_gaps)
