"""How fast does the creative LLM learn to read a user signal given as ONE soft token?

    python -m benchmarks.soft_token_reading --signal oracle --steps 60 [--set key=value ...]

HLLMCreator's title depends on U only through one soft token, and a trained model can
fail to use U for two reasons: U lacks the information, or the creative LLM has not
learnt to read a soft token in the steps it had. This script separates the two. It
trains the creative LLM alone (HLLMCreator's own ``CreativeLLM``, projector and loss,
with the yaml defaults) on the shipped synthetic ads, with the soft token made from a
*given* user vector instead of U:

* ``oracle``: the user's latent facet ranking (ground truth, 10 numbers): the best a U
  could carry;
* ``profile``: the MiniLM embedding of the user's text profile;
* ``none``: no soft token (the ablation).

Each user's first two creative rows train, the last one is held out (as RecBole's
leave-one-out split does). After training it generates the held-out titles with each
user's own vector and with another user's (shuffled), and reports interest-hit,
off-facet and titles per ad for both: reading the signal shows as own > shuffled.
Writes ``results/soft_token_reading-<signal>.json``.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


class Settings(dict):
    """RecBole-style config lookup: a missing key is None."""

    def __missing__(self, key):
        return None


def load_settings(overrides: dict) -> Settings:
    settings = Settings()
    for name in ("HLLM.yaml", "HLLMCreator.yaml"):
        settings.update(yaml.safe_load((ROOT / "properties" / "model" / name).read_text()))
    settings.update(yaml.safe_load((ROOT / "properties" / "dataset" / "ads-synth.yaml").read_text()))
    settings.update(overrides)
    return settings


def oracle_vector(ranking: tuple[str, ...]) -> list[float]:
    from recbole_hllm.data.synthetic_ads import FACETS

    return [1.0 - 2.0 * ranking.index(f) / (len(FACETS) - 1) for f in FACETS]  # top +1 ... last -1


def user_vectors(signal: str, users) -> torch.Tensor | None:
    if signal == "none":
        return None
    if signal == "oracle":
        return torch.tensor([oracle_vector(u.final_ranking) for u in users])
    from transformers import AutoModel, AutoTokenizer

    from recbole_hllm.llm.embedded import embedded_model_dir

    path = embedded_model_dir("minilm")
    tok, enc = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        batch = tok([u.profile for u in users], padding=True, return_tensors="pt")
        hidden = enc(**batch).last_hidden_state
        mask = batch["attention_mask"][..., None]
        return (hidden * mask).sum(1) / mask.sum(1)


def split_rows(data, n_eval: int):
    ads = {ad.item_id: ad for ad in data.ads}
    index = {u.user_id: i for i, u in enumerate(data.users)}
    by_user: dict[str, list] = {}
    for c in data.creatives:  # in click order per user
        by_user.setdefault(c.user_id, []).append(c)
    train, test = [], []
    for user_id, rows in by_user.items():
        train += [(index[user_id], r) for r in rows[:2]]
        test.append((index[user_id], rows[-1]))
    return ads, train, test[:n_eval]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--signal", choices=("oracle", "profile", "none"), default="oracle")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-pairs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="HLLMCreator yaml overrides")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    overrides = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    settings = load_settings(overrides)

    from recbole_hllm.data.synthetic_ads import build, facets_in_text
    from recbole_hllm.model.creative_llm import CreativeLLM, PromptTemplate
    from recbole_hllm.model.heads import SoftTokenProjector

    data = build()
    ads, train, test = split_rows(data, args.eval_pairs)
    vectors = user_vectors(args.signal, data.users)
    creative = CreativeLLM(settings, torch.device("cpu"))
    template = PromptTemplate(settings["creative_prompt"], "creative_prompt")
    projector = None
    if vectors is not None:
        projector = SoftTokenProjector(vectors.shape[1], creative.hidden_size, creative.mean_token_norm())
    params = [{"params": [p for p in creative.parameters() if p.requires_grad], "lr": settings["creative_learning_rate"]}]
    if projector is not None:
        params.append({"params": list(projector.parameters()), "lr": settings["projector_learning_rate"]})
    optimizer = torch.optim.Adam(params)

    def prompt(rows, vecs):
        parts = [template.split(title=ads[r.item_id].title, description=ads[r.item_id].description) for _, r in rows]
        soft = projector(vecs) if projector is not None else None
        return creative.token_ids([b for b, _ in parts]), soft, creative.token_ids([a for _, a in parts])

    rng = random.Random(args.seed)
    order = list(range(len(train)))
    rng.shuffle(order)
    creative.train()
    start, losses = time.perf_counter(), []
    for step in range(args.steps):
        batch = [train[order[(step * args.batch_size + i) % len(order)]] for i in range(args.batch_size)]
        vecs = vectors[[u for u, _ in batch]] if vectors is not None else None
        before, soft, after = prompt(batch, vecs)
        loss = creative.loss(before, soft, after, creative.target_ids([r.title for _, r in batch]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss:.4f} ({time.perf_counter() - start:.1f}s)", flush=True)
    train_seconds = time.perf_counter() - start

    creative.eval()
    decoding = dict(max_new_tokens=settings["generation_max_new_tokens"], do_sample=False)
    shuffled = list(range(len(test)))
    random.Random(1).shuffle(shuffled)
    report = {"signal": args.signal, "steps": args.steps, "batch_size": args.batch_size, "overrides": overrides,
              "train_seconds": round(train_seconds, 1), "seconds_per_step": round(train_seconds / args.steps, 2),
              "first_loss": round(losses[0], 4), "last10_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
              "eval_pairs": len(test)}
    for name, perm in (("own", list(range(len(test)))), ("shuffled", shuffled)):
        if name == "shuffled" and vectors is None:
            break
        titles = []
        with torch.no_grad():
            for s in range(0, len(test), 32):
                rows = test[s : s + 32]
                vecs = vectors[[test[perm[s + i]][0] for i in range(len(rows))]] if vectors is not None else None
                before, soft, after = prompt(rows, vecs)
                titles += creative.generate(before, soft, after, **decoding)[0]
        hits = [r.facet in facets_in_text(t) for (_, r), t in zip(test, titles)]
        off = [bool(facets_in_text(t) - ads[r.item_id].facets) for (_, r), t in zip(test, titles)]
        per_ad: dict[str, set] = {}
        for (_, r), t in zip(test, titles):
            per_ad.setdefault(r.item_id, set()).add(t)
        multi = [len(v) for k, v in per_ad.items() if sum(1 for _, r in test if r.item_id == k) > 1]
        report[name] = {"interest_hit": round(sum(hits) / len(hits), 4), "off_facet": round(sum(off) / len(off), 4),
                        "titles_per_ad": round(sum(multi) / max(len(multi), 1), 3),
                        "examples": [[r.title, t] for (_, r), t in list(zip(test, titles))[:5]]}
        print(name, json.dumps(report[name]), flush=True)
    out = Path(args.out or ROOT / "results" / f"soft_token_reading-{args.signal}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("own", "shuffled")}))


if __name__ == "__main__":
    main()
