"""A seeded synthetic dataset of ads, clicks and personalised ad titles.

Why it exists: HLLM-Creator learns to rewrite an ad's title for one user, and no
public dataset pairs click histories with per-user ad titles. This generator plants
a known structure instead, so training and evaluation have something real to find:

* every user has a latent ranking over ten interest *facets* (health, price, ...),
  and for some users the top facet changes half-way through their clicks (drift);
* every ad states 2-4 *selling points*, each tied to a distinct facet, verbatim in
  its description;
* users click mostly ads that carry their current top two facets;
* for each user's last four clicks the reference title highlights the selling point
  of the facet the user ranks highest among the ad's facets (the ground truth).

Evaluation reads the ground truth back through :data:`FACET_KEYWORDS` and
:func:`facets_in_text`: a title "hits" a facet when it contains one of its keywords.
The lexicons are built so that a phrase of one facet never contains a keyword of
another, and original titles contain none at all.

Everything is drawn from ``random.Random`` instances seeded from ``seed`` (never the
global RNG), iteration is over sorted or fixed-order sequences, and files are written
with ``\\n`` line ends, so a rerun with the same arguments is byte-identical.

Regenerate the committed copy with
``python -m recbole_hllm.data.synthetic_ads --out dataset --name ads-synth --seed 7``.
"""
from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path

from recbole_hllm.data.keywords import groups_in_text

FACETS = ("health", "price", "productivity", "fitness", "family",
          "eco", "premium", "convenience", "style", "tech")

# Lowercase evaluation keywords. The first keyword of each facet is its name, so a
# profile or title naming the facet always hits it.
FACET_KEYWORDS: dict[str, list[str]] = {
    "health": ["health", "healthy", "sugar", "additives", "natural", "organic",
               "vitamins", "non-toxic", "bpa-free", "hypoallergenic"],
    "price": ["price", "prices", "deal", "deals", "discounts", "$", "% off", "save",
              "buy 1 get 1", "best-value", "bargain"],
    "productivity": ["productivity", "productive", "workday", "workdays", "focus",
                     "focused", "office", "deadlines", "get more done"],
    "fitness": ["fitness", "workout", "workouts", "gym", "training", "muscle",
                "sweatproof", "active"],
    "family": ["family", "kids", "parents", "child-safe", "children"],
    "eco": ["eco", "eco-friendly", "recyclable", "recycled", "sustainable",
            "sustainably", "plastic-free", "carbon-neutral", "compostable"],
    "premium": ["premium", "handcrafted", "luxury", "artisan", "award-winning",
                "hand-picked", "craftsmanship", "finest"],
    "convenience": ["convenience", "convenient", "minutes", "seconds",
                    "next-day delivery", "easy", "quick", "no prep", "grab-and-go", "folds"],
    "style": ["style", "stylish", "limited-edition", "trendy", "sleek", "designer", "chic"],
    "tech": ["tech", "bluetooth", "smart", "app", "usb-c", "gps", "ai", "battery",
             "sensors", "gadgets"],
}

# Selling-point phrases per facet and product kind: things you eat or drink
# ("consumable") and things you use ("durable") need different claims.
FACET_PHRASES: dict[str, dict[str, list[str]]] = {
    "health": {
        "consumable": ["0 sugar", "no additives", "natural ingredients", "certified organic",
                       "rich in vitamins"],
        "durable": ["non-toxic materials", "BPA-free materials", "made for healthy habits",
                    "hypoallergenic materials"],
    },
    "price": {
        "consumable": ["half price today", "under $10", "buy 1 get 1 free",
                       "save 30% this week", "best-value deal"],
        "durable": ["half price today", "under $50", "20% off your first order",
                    "save 30% this week", "best-value deal"],
    },
    "productivity": {
        "consumable": ["fuel for long workdays", "stay focused all afternoon",
                       "a clear head for deadlines"],
        "durable": ["built for busy workdays", "stay focused anywhere",
                    "made for the home office", "get more done every day"],
    },
    "fitness": {
        "consumable": ["fuel for your workouts", "protein for muscle recovery",
                       "a post-workout boost"],
        "durable": ["built for your workouts", "sweatproof for the gym",
                    "made for active days", "ready for training"],
    },
    "family": {
        "consumable": ["safe for kids", "family-size pack", "kids love the taste"],
        "durable": ["safe for kids", "family-size", "a favourite with parents",
                    "child-safe design"],
    },
    "eco": {
        "consumable": ["100% recyclable packaging", "plastic-free packaging",
                       "sustainably sourced", "carbon-neutral shipping"],
        "durable": ["made from recycled materials", "100% recyclable",
                    "carbon-neutral shipping", "eco-friendly materials"],
    },
    "premium": {
        "consumable": ["small-batch artisan recipe", "award-winning taste",
                       "premium ingredients", "hand-picked quality"],
        "durable": ["handcrafted", "premium materials", "luxury finish",
                    "award-winning craftsmanship"],
    },
    "convenience": {
        "consumable": ["ready in 2 minutes", "free next-day delivery", "no prep needed",
                       "grab-and-go"],
        "durable": ["free next-day delivery", "easy to clean", "folds in seconds",
                    "set up in 2 minutes"],
    },
    "style": {
        "consumable": ["limited-edition tin", "stylish gift box", "trendy new flavour"],
        "durable": ["limited-edition design", "sleek minimalist look", "in 6 trendy colours",
                    "stylish matte finish"],
    },
    "tech": {
        "consumable": [],
        "durable": ["Bluetooth 5.3", "smart app control", "USB-C fast charging",
                    "40-hour battery", "built-in GPS", "AI-powered sensors"],
    },
}


@dataclass(frozen=True)
class Category:
    """A product category: its kind (picks the phrase list), plausible facets, products."""

    kind: str
    facets: tuple[str, ...]
    products: tuple[str, ...]


CATEGORIES: dict[str, Category] = {
    "green tea": Category("consumable", ("health", "price", "productivity", "eco", "premium",
                                         "convenience", "style"),
                          ("Green Tea", "Matcha Green Tea", "Jasmine Green Tea")),
    "coffee": Category("consumable", ("health", "price", "productivity", "eco", "premium",
                                      "convenience", "style"),
                       ("Coffee", "Cold Brew Coffee", "Espresso Beans")),
    "protein bar": Category("consumable", ("health", "price", "productivity", "fitness",
                                           "family", "eco", "convenience"),
                            ("Protein Bar", "Peanut Protein Bar", "Cocoa Protein Bar")),
    "meal kit": Category("consumable", ("health", "price", "productivity", "family", "eco",
                                        "premium", "convenience"),
                         ("Meal Kit", "Dinner Box", "Weekly Meal Kit")),
    "juice": Category("consumable", ("health", "price", "fitness", "family", "eco",
                                     "premium", "style"),
                      ("Orange Juice", "Cold-Pressed Juice", "Apple Juice")),
    "headphones": Category("durable", ("price", "productivity", "fitness", "premium",
                                       "convenience", "style", "tech"),
                           ("Headphones", "Wireless Earbuds", "Over-Ear Headphones")),
    "laptop": Category("durable", ("price", "productivity", "eco", "premium", "convenience",
                                   "style", "tech"),
                       ("Laptop", "Ultrabook", "Laptop 14")),
    "smartwatch": Category("durable", ("price", "productivity", "fitness", "premium", "style",
                                       "tech", "convenience"),
                           ("Smartwatch", "Watch", "Sport Watch")),
    "backpack": Category("durable", ("price", "productivity", "fitness", "family", "eco",
                                     "premium", "style"),
                         ("Backpack", "Travel Backpack", "Daypack")),
    "running shoes": Category("durable", ("health", "price", "fitness", "eco", "premium",
                                          "style", "tech"),
                              ("Running Shoes", "Trail Shoes", "Road Runners")),
    "baby stroller": Category("durable", ("health", "price", "family", "eco", "premium",
                                          "convenience", "style"),
                              ("Baby Stroller", "Pushchair", "Travel Stroller")),
    "water bottle": Category("durable", ("health", "price", "fitness", "family", "eco",
                                         "convenience", "style"),
                             ("Water Bottle", "Insulated Bottle", "Steel Bottle")),
    "yoga mat": Category("durable", ("health", "price", "fitness", "eco", "premium", "style"),
                         ("Yoga Mat", "Cork Yoga Mat", "Travel Yoga Mat")),
    "desk lamp": Category("durable", ("price", "productivity", "family", "eco", "premium",
                                      "style", "tech"),
                          ("Desk Lamp", "LED Desk Lamp", "Reading Lamp")),
    "blender": Category("durable", ("health", "price", "family", "eco", "convenience",
                                    "premium", "tech"),
                        ("Blender", "Personal Blender", "Countertop Blender")),
}

# Brand names are PREFIX + suffix ("Zen" + "leaf" = "Zenleaf"): one made-up word.
BRAND_PREFIXES = ("Zen", "Nova", "Alto", "Brio", "Luma", "Terra", "Vivo", "Kora", "Mira",
                  "Solis", "Orbi", "Vela", "Juno", "Tavi", "Rumi", "Oro", "Flux", "Lark")
BRAND_SUFFIXES = ("leaf", "wave", "nest", "line", "form", "mark", "field", "stone",
                  "bloom", "path", "tide", "crest")
# Optional model word between brand and product ("Novawave Pro Headphones").
MODEL_WORDS = ("Pro", "Max", "Lite", "Classic", "Everyday", "Plus", "One", "Mini", "Air")

DESCRIPTION_TEMPLATES = ("{title}: {points}.", "{title}. Highlights: {points}.")
REFERENCE_TITLE_TEMPLATES = ("{title}: {phrase}", "{phrase} | {title}", "{title} - {phrase}",
                             "{title}, {phrase}", "{title} ({phrase})")

# The profile opens with the top facet's theme and adds the second facet's; each
# part contains its facet's name (FACET_KEYWORDS[facet][0]) and no other facet's keyword.
PROFILE_LEADS: dict[str, str] = {
    "health": "Health-minded: looks for natural products with little sugar",
    "price": "Price-conscious: hunts for deals and discounts",
    "productivity": "Productivity-driven: wants gear that helps focus on busy workdays",
    "fitness": "Fitness fan: shops for workouts and the gym",
    "family": "Family-first: buys what is safe for kids",
    "eco": "Eco-conscious: prefers recyclable and sustainable products",
    "premium": "Premium taste: values handcrafted quality",
    "convenience": "Convenience seeker: wants things that are quick and easy",
    "style": "Style-savvy: picks stylish and limited-edition looks",
    "tech": "Tech enthusiast: loves smart gadgets",
}
PROFILE_ALSO: dict[str, str] = {
    "health": "also cares about health",
    "price": "also watches prices",
    "productivity": "also values productivity",
    "fitness": "also keeps up with fitness",
    "family": "also shops for the family",
    "eco": "also leans eco-friendly",
    "premium": "also appreciates premium quality",
    "convenience": "also likes convenience",
    "style": "also cares about style",
    "tech": "also enjoys new tech",
}

N_CREATIVES_PER_USER = 4  # the last 4 clicks: 2 training rows, validation, test
INTEREST_CLICK_RATE = 0.75  # the rest are noise clicks on any ad
DOMINANT_SHARE = 0.65  # of interest clicks, the rest go to the second facet
FIRST_TIMESTAMP = 1_700_000_000
DEFAULTS = {"name": "ads-synth", "seed": 7, "n_users": 1000, "n_ads": 300,
            "min_clicks": 15, "max_clicks": 60, "drift_rate": 0.3}
CLI_FLAGS = {"n_users": "--users", "n_ads": "--ads", "min_clicks": "--min-clicks",
             "max_clicks": "--max-clicks", "drift_rate": "--drift-rate"}


@dataclass(frozen=True)
class SellingPoint:
    facet: str
    phrase: str


@dataclass(frozen=True)
class Ad:
    item_id: str
    title: str
    category: str
    selling_points: tuple[SellingPoint, ...]
    description: str

    @property
    def facets(self) -> set[str]:
        return {point.facet for point in self.selling_points}


@dataclass(frozen=True)
class User:
    """A user's latent interests, click sequence (item ids, timestamps) and profile.

    ``early_ranking`` drives the clicks before the midpoint, ``final_ranking`` those
    after it; they differ only for drifting users. The profile and the ground truth use
    ``final_ranking``.
    """

    user_id: str
    early_ranking: tuple[str, ...]
    final_ranking: tuple[str, ...]
    clicked_items: tuple[str, ...]
    timestamps: tuple[int, ...]
    profile: str

    @property
    def drifts(self) -> bool:
        return self.early_ranking[0] != self.final_ranking[0]


@dataclass(frozen=True)
class Creative:
    """One (user, ad) reference title and the facet it highlights (the ground truth)."""

    user_id: str
    item_id: str
    facet: str
    phrase: str
    title: str


@dataclass(frozen=True)
class SyntheticAds:
    ads: tuple[Ad, ...]
    users: tuple[User, ...]
    creatives: tuple[Creative, ...]


# ---------------------------------------------------------------- keyword matching

def facets_in_text(text: str) -> set[str]:
    """The facets whose keywords occur in ``text`` (case-insensitive, whole words)."""
    return groups_in_text(text, FACET_KEYWORDS)


# ---------------------------------------------------------------- ads

def _padded_ids(prefix: str, count: int, min_width: int) -> list[str]:
    """Zero-padded ids, so string order equals numeric order."""
    width = max(min_width, len(str(count)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]


def _new_title(rng: random.Random, category: Category, used_titles: set[str]) -> str:
    """A fresh 2-5 word title: brand, optional model word, product."""
    while True:
        brand = rng.choice(BRAND_PREFIXES) + rng.choice(BRAND_SUFFIXES)
        model = [rng.choice(MODEL_WORDS)] if rng.random() < 0.4 else []
        title = " ".join([brand, *model, rng.choice(category.products)])
        if title not in used_titles:
            used_titles.add(title)
            return title


def _pick_facets(rng: random.Random, category: Category, facet_usage: dict[str, int]) -> list[str]:
    """2-4 distinct facets of the category, favouring facets used least so far.

    The jitter keeps choices random while the usage count keeps every facet well
    represented across the catalogue.
    """
    count = rng.randint(2, 4)
    ranked = sorted(category.facets, key=lambda f: (facet_usage[f] + rng.uniform(0, 4), f))
    chosen = ranked[:count]
    rng.shuffle(chosen)
    for facet in chosen:
        facet_usage[facet] += 1
    return chosen


def _describe(rng: random.Random, title: str, phrases: list[str]) -> str:
    """State every selling point verbatim: "Title: a, b and c." """
    points = ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return rng.choice(DESCRIPTION_TEMPLATES).format(title=title, points=points)


def build_ads(rng: random.Random, n_ads: int) -> list[Ad]:
    """``n_ads`` ads, categories assigned round-robin so each is equally common."""
    category_names = sorted(CATEGORIES)
    facet_usage = {facet: 0 for facet in FACETS}
    used_titles: set[str] = set()
    ads = []
    for index, item_id in enumerate(_padded_ids("a", n_ads, 3)):
        category_name = category_names[index % len(category_names)]
        category = CATEGORIES[category_name]
        title = _new_title(rng, category, used_titles)
        points = tuple(SellingPoint(f, rng.choice(FACET_PHRASES[f][category.kind]))
                       for f in _pick_facets(rng, category, facet_usage))
        description = _describe(rng, title, [p.phrase for p in points])
        ads.append(Ad(item_id, title, category_name, points, description))
    return ads


# ---------------------------------------------------------------- users and clicks

def _rankings(rng: random.Random, drift_rate: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(early, final) facet rankings; a drifting user's 3rd-5th facet takes the top.

    The new top facet keeps the old second one behind it and the old top facet falls
    to the end: the interest moved, it did not just swap places.
    """
    early = tuple(rng.sample(FACETS, len(FACETS)))
    if rng.random() >= drift_rate:
        return early, early
    new_top = early[rng.randint(2, 4)]
    rest = [f for f in early[2:] if f != new_top]
    return early, (new_top, early[1], *rest, early[0])


def _next_click(rng: random.Random, ranking: tuple[str, ...], ads_by_facet: dict[str, list[str]],
                all_item_ids: list[str], clicked: set[str]) -> str:
    """Mostly an unclicked ad with the top or second facet, sometimes any unclicked ad."""
    if rng.random() < INTEREST_CLICK_RATE:
        facet = ranking[0] if rng.random() < DOMINANT_SHARE else ranking[1]
        pool = [i for i in ads_by_facet[facet] if i not in clicked]
        if pool:
            return rng.choice(pool)
    return rng.choice([i for i in all_item_ids if i not in clicked])


def _click_sequence(rng: random.Random, early: tuple[str, ...], final: tuple[str, ...],
                    length: int, ads_by_facet: dict[str, list[str]],
                    all_item_ids: list[str]) -> list[str]:
    """``length`` distinct item ids; the first half follows ``early``, the rest ``final``."""
    clicked: list[str] = []
    clicked_set: set[str] = set()
    for position in range(length):
        ranking = early if position < length // 2 else final
        item_id = _next_click(rng, ranking, ads_by_facet, all_item_ids, clicked_set)
        clicked.append(item_id)
        clicked_set.add(item_id)
    return clicked


def _timestamps(rng: random.Random, count: int) -> list[int]:
    """Strictly increasing times: a random start within 30 days, 5 min-2 day gaps."""
    now = FIRST_TIMESTAMP + rng.randrange(30 * 86400)
    times = []
    for _ in range(count):
        now += rng.randint(300, 2 * 86400)
        times.append(now)
    return times


def profile_text(ranking: tuple[str, ...]) -> str:
    """The user's text profile: top facet's theme, then the second facet's."""
    return f"{PROFILE_LEADS[ranking[0]]}; {PROFILE_ALSO[ranking[1]]}."


def build_users(rng: random.Random, ads: list[Ad], n_users: int, min_clicks: int,
                max_clicks: int, drift_rate: float) -> list[User]:
    all_item_ids = sorted(ad.item_id for ad in ads)
    ads_by_facet = {f: sorted(ad.item_id for ad in ads if f in ad.facets) for f in FACETS}
    users = []
    for user_id in _padded_ids("u", n_users, 4):
        early, final = _rankings(rng, drift_rate)
        length = min(rng.randint(min_clicks, max_clicks), len(all_item_ids))
        clicked = _click_sequence(rng, early, final, length, ads_by_facet, all_item_ids)
        users.append(User(user_id, early, final, tuple(clicked),
                          tuple(_timestamps(rng, length)), profile_text(final)))
    return users


# ---------------------------------------------------------------- creatives

def ground_truth_facet(ranking: tuple[str, ...], ad: Ad) -> str:
    """The facet the user ranks highest among the ad's selling-point facets."""
    return min(ad.facets, key=ranking.index)


def _creative(rng: random.Random, user: User, ad: Ad) -> Creative:
    """The reference title: the original title plus the ground-truth phrase, verbatim."""
    facet = ground_truth_facet(user.final_ranking, ad)
    phrase = next(p.phrase for p in ad.selling_points if p.facet == facet)
    title = rng.choice(REFERENCE_TITLE_TEMPLATES).format(title=ad.title, phrase=phrase)
    return Creative(user.user_id, ad.item_id, facet, phrase, title)


def build_creatives(rng: random.Random, users: list[User], ads: list[Ad]) -> list[Creative]:
    """One creative per user for each of the last ``N_CREATIVES_PER_USER`` clicks."""
    ads_by_id = {ad.item_id: ad for ad in ads}
    return [_creative(rng, user, ads_by_id[item_id])
            for user in users for item_id in user.clicked_items[-N_CREATIVES_PER_USER:]]


def build(seed: int = DEFAULTS["seed"], n_users: int = DEFAULTS["n_users"],
          n_ads: int = DEFAULTS["n_ads"], min_clicks: int = DEFAULTS["min_clicks"],
          max_clicks: int = DEFAULTS["max_clicks"],
          drift_rate: float = DEFAULTS["drift_rate"]) -> SyntheticAds:
    """The whole dataset in memory (latent rankings included, for tests and analysis).

    Ads, users and titles each get their own RNG seeded from ``seed``, so e.g. the
    catalogue does not change when only ``n_users`` does.
    """
    if min_clicks <= N_CREATIVES_PER_USER or max_clicks < min_clicks:
        raise ValueError(f"need {N_CREATIVES_PER_USER} < min_clicks <= max_clicks, "
                         f"got {min_clicks}, {max_clicks}")
    if n_ads < max(min_clicks, len(CATEGORIES)):
        raise ValueError(f"n_ads={n_ads} must be at least min_clicks and {len(CATEGORIES)}")
    ads = build_ads(random.Random(f"{seed}/ads"), n_ads)
    users = build_users(random.Random(f"{seed}/users"), ads, n_users, min_clicks,
                        max_clicks, drift_rate)
    creatives = build_creatives(random.Random(f"{seed}/titles"), users, ads)
    return SyntheticAds(tuple(ads), tuple(users), tuple(creatives))


# ---------------------------------------------------------------- files

def _write_table(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """A RecBole atomic file; refuses fields that would break its tab/space parsing."""
    lines = ["\t".join(header)]
    for row in rows:
        for field in row:
            if "\t" in field or "\n" in field or "\r" in field or "  " in field \
                    or field != field.strip():
                raise ValueError(f"{path.name}: field {field!r} breaks the atomic format")
        lines.append("\t".join(row))
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write("\n".join(lines) + "\n")


def _tables(data: SyntheticAds) -> dict[str, tuple[list[str], list[list[str]]]]:
    """File suffix -> (header, rows), every table in a fixed, sorted order."""
    profiles = {user.user_id: user.profile for user in data.users}
    return {
        "inter": (["user_id:token", "item_id:token", "timestamp:float"],
                  [[u.user_id, i, str(t)] for u in data.users
                   for i, t in zip(u.clicked_items, u.timestamps)]),
        "item": (["item_id:token", "title:token_seq", "description:token_seq", "category:token"],
                 [[a.item_id, a.title, a.description, a.category] for a in data.ads]),
        "creative": (["user_id:token", "item_id:token", "title:token_seq", "profile:token_seq"],
                     [[c.user_id, c.item_id, c.title, profiles[c.user_id]] for c in data.creatives]),
        "truth": (["user_id:token", "item_id:token", "facet:token"],
                  [[c.user_id, c.item_id, c.facet] for c in data.creatives]),
        "sellingpoint": (["item_id:token", "facet:token", "phrase:token_seq"],
                         [[a.item_id, p.facet, p.phrase] for a in data.ads for p in a.selling_points]),
        "facet": (["facet:token", "keyword:token_seq"],
                  [[f, k] for f in FACETS for k in FACET_KEYWORDS[f]]),
    }


def summary(data: SyntheticAds) -> dict:
    return {
        "users": len(data.users),
        "ads": len(data.ads),
        "interactions": sum(len(u.clicked_items) for u in data.users),
        "creative_rows": len(data.creatives),
        "selling_points": sum(len(a.selling_points) for a in data.ads),
        "drifting_users": sum(u.drifts for u in data.users),
    }


def regeneration_command(name: str, seed: int, **options) -> str:
    """The CLI call that rewrites the dataset (non-default options spelled out)."""
    parts = ["python -m recbole_hllm.data.synthetic_ads --out dataset",
             f"--name {name}", f"--seed {seed}"]
    parts += [f"{CLI_FLAGS[key]} {value}" for key, value in options.items()
              if value != DEFAULTS[key]]
    return " ".join(parts)


README_TEMPLATE = """\
# {name}: synthetic personalised ad-creative dataset

Generated data (no real users, ads or brands) for HLLM-Creator: click sequences over
ads, and for each user's last {n_creatives} clicks a reference ad title rewritten to
highlight the selling point that user cares about most.

* Users have a hidden ranking over 10 interest facets: {facets}.
  {drifting_users} of the {users} users switch their top facet half-way through their clicks.
* Each ad states 2-4 selling points (one facet each) verbatim in its description.
* About {interest_pct}% of clicks go to ads carrying the user's current top two facets,
  the rest to random ads.

Counts: {users} users, {ads} ads, {interactions} interactions, {creative_rows} creative rows,
{selling_points} selling points.

## Regenerate

Made by `recbole_hllm/data/synthetic_ads.py` (seeded; a rerun is byte-identical):

```bash
{command}
```

## Files (RecBole atomic files: UTF-8, tab-separated, header `name:type`)

| file | columns | rows |
|---|---|---|
| `{name}.inter` | `user_id:token item_id:token timestamp:float` | one per click, by user then time |
| `{name}.item` | `item_id:token title:token_seq description:token_seq category:token` | one per ad |
| `{name}.creative` | `user_id:token item_id:token title:token_seq profile:token_seq` | reference title for each user's last {n_creatives} clicks; the user's text profile |
| `{name}.truth` | `user_id:token item_id:token facet:token` | the facet each creative highlights (evaluation only, never a model input) |
| `{name}.sellingpoint` | `item_id:token facet:token phrase:token_seq` | one per ad selling point |
| `{name}.facet` | `facet:token keyword:token_seq` | one per facet keyword; a title "hits" a facet when it contains one of its keywords |

The ground-truth facet of a (user, ad) is the user's highest-ranked facet (after any
drift) among the ad's selling-point facets. The last click of each user is RecBole's
test item and the one before it the validation item.

## License

Generated data, released under Apache-2.0 like the `recbole_hllm` package.
"""


def _readme(name: str, seed: int, options: dict, counts: dict) -> str:
    return README_TEMPLATE.format(
        name=name, facets=", ".join(FACETS), n_creatives=N_CREATIVES_PER_USER,
        interest_pct=round(100 * INTEREST_CLICK_RATE),
        command=regeneration_command(name, seed, **options), **counts)


def generate(out_dir: str | Path, name: str = DEFAULTS["name"], seed: int = DEFAULTS["seed"],
             n_users: int = DEFAULTS["n_users"], n_ads: int = DEFAULTS["n_ads"],
             min_clicks: int = DEFAULTS["min_clicks"], max_clicks: int = DEFAULTS["max_clicks"],
             drift_rate: float = DEFAULTS["drift_rate"]) -> dict:
    """Write ``out_dir/name/`` (atomic files + README.md); return the summary counts."""
    options = {"n_users": n_users, "n_ads": n_ads, "min_clicks": min_clicks,
               "max_clicks": max_clicks, "drift_rate": drift_rate}
    data = build(seed, **options)
    folder = Path(out_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    for suffix, (header, rows) in _tables(data).items():
        _write_table(folder / f"{name}.{suffix}", header, rows)
    counts = summary(data)
    with open(folder / "README.md", "w", encoding="utf-8", newline="\n") as handle:
        handle.write(_readme(name, seed, options, counts))
    return counts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m recbole_hllm.data.synthetic_ads",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="dataset", help="parent folder (default: dataset)")
    parser.add_argument("--name", default=DEFAULTS["name"])
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--users", dest="n_users", type=int, default=DEFAULTS["n_users"])
    parser.add_argument("--ads", dest="n_ads", type=int, default=DEFAULTS["n_ads"])
    parser.add_argument("--min-clicks", dest="min_clicks", type=int, default=DEFAULTS["min_clicks"])
    parser.add_argument("--max-clicks", dest="max_clicks", type=int, default=DEFAULTS["max_clicks"])
    parser.add_argument("--drift-rate", dest="drift_rate", type=float,
                        default=DEFAULTS["drift_rate"])
    args = vars(parser.parse_args(argv))
    out_dir = args.pop("out")
    counts = generate(out_dir, **args)
    print(f"wrote {Path(out_dir) / args['name']}")
    for key, value in counts.items():
        print(f"{key}: {value}")
    return counts


if __name__ == "__main__":
    main()
