"""Can the creative LLM read a user signal, and how fast, by how it enters?

    python -m benchmarks.signal_reading --signal oracle --user-injection prefix --steps 60 [--set key=value ...]

A trained HLLMCreator can fail to use U for two reasons: U lacks the information, or
the creative LLM has not learnt to read it in the steps it had. This separates the
two. It trains the creative LLM alone (HLLMCreator's own ``CreativeLLM``,
``UserConditioner`` and title loss, with the yaml defaults; ``--set`` overrides them)
on the shipped synthetic ads, with the user signal *given* instead of learnt:

* ``oracle``: the user's latent facet ranking (ground truth, 10 numbers) through the
  conditioner of ``--user-injection`` (``prefix``: a key/value pair per layer;
  ``soft_token``: one input embedding, the paper's way; ``both``): the most a U could carry;
* ``none``: no signal (the ablation);
* ``word``: no conditioner; the name of the user's top facet written into the prompt;
* ``text``: no conditioner; the user's whole text profile written into the prompt.

``--recon`` adds HLLMCreator's reconstruction loss (the profile written from the same
conditioner). ``--task facet_name`` replaces the title by a control task: write the
user's top facet after "Top interest:" (a direct read-out of the signal).

Each user's first two creative rows train (in click order), the last one is held out,
as RecBole's leave-one-out split does. The held-out titles are generated with each
user's own signal and with another user's (a seeded derangement); interest-hit,
off-facet and titles per ad are reported for both: reading the signal shows as own >
shuffled. Writes ``results/signal_reading/<run name>.json``.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
TEXT_SIGNALS = ("text", "word")


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
    """The facet ranking as 10 numbers: +1 for the top facet down to -1 for the last."""
    from recbole_hllm.data.synthetic_ads import FACETS

    return [1.0 - 2.0 * ranking.index(f) / (len(FACETS) - 1) for f in FACETS]


def split_rows(data, n_eval: int):
    """(ads by id, train rows, held-out rows); a row is (user index, Creative)."""
    index = {u.user_id: i for i, u in enumerate(data.users)}
    by_user: dict[str, list] = {}
    for c in data.creatives:  # in click order per user
        by_user.setdefault(c.user_id, []).append(c)
    train, test = [], []
    for user_id, rows in by_user.items():
        train += [(index[user_id], r) for r in rows[:2]]
        test.append((index[user_id], rows[-1]))
    return {ad.item_id: ad for ad in data.ads}, train, test[:n_eval]


class Experiment:
    """The creative LLM, the user signal and how a batch of (user, ad) rows becomes a prompt."""

    def __init__(self, args, settings: Settings):
        from recbole_hllm.data.synthetic_ads import build
        from recbole_hllm.model.creative_llm import CreativeLLM, PromptTemplate
        from recbole_hllm.model.user_conditioning import UserConditioner

        self.args, self.settings = args, settings
        self.data = build()
        self.ads, self.train_rows, self.test_rows = split_rows(self.data, args.eval_pairs)
        self.users = self.data.users
        if args.task == "facet_name":  # the answer depends on the user alone: hold whole users out
            held_out = {u for u, _ in self.test_rows}
            self.train_rows = [row for row in self.train_rows if row[0] not in held_out]
        settings["user_injection"] = args.user_injection
        self.creative = CreativeLLM(settings, torch.device("cpu"))
        text = "User: {user}\nTop interest:" if args.task == "facet_name" else settings["creative_prompt"]
        self.template = PromptTemplate(text, "creative_prompt")
        self.profile_template = PromptTemplate(settings["profile_prompt"], "profile_prompt")
        self.vectors, self.conditioner = None, None
        if args.signal == "oracle":
            self.vectors = torch.tensor([oracle_vector(u.final_ranking) for u in self.users])
            c, tokens = self.creative, settings["user_prefix_tokens"]
            anchor = c.text_kv(settings["user_prefix_anchor_text"], tokens) if args.user_injection != "soft_token" \
                else None
            self.conditioner = UserConditioner(args.user_injection, self.vectors.shape[1], c.hidden_size,
                                               c.mean_token_norm(), c.kv_geometry, tokens,
                                               settings["user_prefix_hidden_size"], settings["user_prefix_init_std"],
                                               anchor)

    def condition(self, users: list[int]):
        return self.conditioner(self.vectors[users]) if self.conditioner is not None else None

    def prompt(self, rows):
        """(before ids, condition, after ids) for rows ``(user, creative)``."""
        parts = [self.template.split(title=self.ads[r.item_id].title, description=self.ads[r.item_id].description)
                 for _, r in rows]
        if self.args.signal in TEXT_SIGNALS:
            words = [self.users[u].profile if self.args.signal == "text" else self.users[u].final_ranking[0]
                     for u, _ in rows]
            parts = [(b + w + " ", a) for (b, a), w in zip(parts, words)]
        users = [u for u, _ in rows]
        return (self.creative.token_ids([b for b, _ in parts]), self.condition(users),
                self.creative.token_ids([a for _, a in parts]))

    def target(self, row) -> str:
        user, creative_row = row
        return " " + self.users[user].final_ranking[0] if self.args.task == "facet_name" else creative_row.title

    def loss(self, batch) -> torch.Tensor:
        c = self.creative
        before, condition, after = self.prompt(batch)
        loss = c.loss(before, condition, after, c.target_ids([self.target(row) for row in batch]))
        if self.args.recon and condition is not None:
            users = [u for u, _ in batch]
            recon_before, recon_after = self.profile_template.split()
            loss = loss + c.loss(c.token_ids([recon_before] * len(batch)), condition,
                                 c.token_ids([recon_after] * len(batch)),
                                 c.target_ids([self.users[u].profile for u in users]))
        return loss

    def optimizer(self) -> torch.optim.Optimizer:
        params = [{"params": [p for p in self.creative.parameters() if p.requires_grad],
                   "lr": self.settings["creative_learning_rate"]}]
        if self.conditioner is not None:
            params.append({"params": list(self.conditioner.parameters()),
                           "lr": self.settings["projector_learning_rate"]})
        return torch.optim.Adam(params, fused=True)

    @torch.no_grad()
    def generate(self, rows, signal_users: list[int]) -> list[str]:
        """Titles for ``rows`` with the signals of ``signal_users``."""
        decoding = dict(max_new_tokens=self.settings["generation_max_new_tokens"], do_sample=False)
        titles = []
        for s in range(0, len(rows), 32):
            pairs = [(u, r) for u, (_, r) in zip(signal_users[s : s + 32], rows[s : s + 32])]
            before, condition, after = self.prompt(pairs)
            titles += self.creative.generate(before, condition, after, **decoding)[0]
        return titles


def train(exp: Experiment, steps: int, batch_size: int, seed: int) -> dict:
    order = list(range(len(exp.train_rows)))
    random.Random(seed).shuffle(order)
    optimizer = exp.optimizer()
    exp.creative.train()
    start, losses = time.perf_counter(), []
    for step in range(steps):
        batch = [exp.train_rows[order[(step * batch_size + i) % len(order)]] for i in range(batch_size)]
        loss = exp.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        if exp.settings["clip_grad_norm"]:  # as RecBole's trainer does with the same key
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                           **exp.settings["clip_grad_norm"])
        optimizer.step()
        losses.append(loss.item())
        if step % 10 == 0 or step == steps - 1:
            print(f"step {step} loss {losses[-1]:.4f} ({time.perf_counter() - start:.1f}s)", flush=True)
    seconds = time.perf_counter() - start
    return {"train_seconds": round(seconds, 1), "seconds_per_step": round(seconds / steps, 2),
            "first_loss": round(losses[0], 4), "last10_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4)}


def score(exp: Experiment, signal_users: list[int]) -> dict:
    from recbole_hllm.data.synthetic_ads import facets_in_text

    rows = exp.test_rows
    titles = exp.generate(rows, signal_users)
    truth = [exp.users[u].final_ranking[0] if exp.args.task == "facet_name" else r.facet for u, r in rows]
    hits = [facet in facets_in_text(t) for facet, t in zip(truth, titles)]
    off = [bool(facets_in_text(t) - exp.ads[r.item_id].facets) for (_, r), t in zip(rows, titles)]
    per_ad: dict[str, set] = {}
    for (_, r), t in zip(rows, titles):
        per_ad.setdefault(r.item_id, set()).add(t)
    counts = {k: sum(1 for _, r in rows if r.item_id == k) for k in per_ad}
    multi = [len(v) for k, v in per_ad.items() if counts[k] > 1]
    return {"interest_hit": round(sum(hits) / len(hits), 4), "off_facet": round(sum(off) / len(off), 4),
            "titles_per_ad": round(sum(multi) / max(len(multi), 1), 3),
            "examples": [[r.title, t] for (_, r), t in list(zip(rows, titles))[:5]]}


def run_name(args) -> str:
    parts = [args.signal] + ([args.user_injection] if args.signal == "oracle" else [])
    parts += [f"{args.steps}x{args.batch_size}"] + ([args.task] if args.task != "title" else [])
    return "-".join(parts + (["recon"] if args.recon else []))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--signal", choices=("oracle", "none", *TEXT_SIGNALS), default="oracle")
    parser.add_argument("--user-injection", choices=("prefix", "soft_token", "both"), default="prefix",
                        help="how the oracle signal enters the creative LLM")
    parser.add_argument("--task", choices=("title", "facet_name"), default="title")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-pairs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recon", action="store_true", help="also train the reconstruction loss (same conditioner)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="HLLMCreator yaml overrides")
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    from recbole_hllm.evaluation.u_gain import derangement

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    overrides = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    exp = Experiment(args, load_settings(overrides))
    report = {"run": run_name(args), "signal": args.signal, "user_injection": args.user_injection,
              "task": args.task, "recon": args.recon, "steps": args.steps, "batch_size": args.batch_size,
              "overrides": overrides, "eval_pairs": len(exp.test_rows),
              **train(exp, args.steps, args.batch_size, args.seed)}
    exp.creative.eval()
    own = [u for u, _ in exp.test_rows]
    report["own"] = score(exp, own)
    print("own", json.dumps(report["own"]), flush=True)
    if args.signal != "none":
        shuffled = [own[i] for i in derangement(len(own), np.random.default_rng(1))]
        report["shuffled"] = score(exp, shuffled)
        print("shuffled", json.dumps(report["shuffled"]), flush=True)
    out = Path(args.out or ROOT / "results" / "signal_reading" / f"{report['run']}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("own", "shuffled")}))


if __name__ == "__main__":
    main()
