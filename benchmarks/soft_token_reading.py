"""How fast does the creative LLM learn to read a user signal given as ONE soft token?

    python -m benchmarks.soft_token_reading --signal oracle --steps 60 [--set key=value ...]

HLLMCreator's title depends on U only through one soft token, and a trained model can
fail to use U for two reasons: U lacks the information, or the creative LLM has not
learnt to read a soft token in the steps it had. This script separates the two. It
trains the creative LLM alone (HLLMCreator's own ``CreativeLLM``, ``SoftTokenProjector``
and title loss, with the yaml defaults; ``--set`` overrides them) on the shipped
synthetic ads, with the user signal *given* instead of learnt:

* ``oracle``: a soft token projected from the user's latent facet ranking (ground
  truth, 10 numbers): the most a U could carry;
* ``bow``: a fixed soft token, the mean of the creative LLM's own word embeddings of
  the user's profile tokens (rescaled to a word embedding's norm): no projector to learn;
* ``none``: no soft token (the ablation);
* ``word``: no soft token; the name of the user's top facet is written into the
  prompt before the user slot (one word of text);
* ``text``: no soft token; the user's text profile is written there instead.

Variants (flags): ``--recon`` adds HLLMCreator's reconstruction loss through the same
projector; ``--decode-profile`` has the LLM write the profile from the soft token first
and the title after it; ``--projector vocab`` makes the soft token a learnt mixture of
the profiles' word embeddings, pulled towards each user's (IDF-weighted) profile words;
``--novel-weight W`` weighs the reference tokens absent from the original title (the
rewrite) W times. ``--task facet_name`` replaces the title by a control task: write the
user's top facet after "Top interest:" (a direct read-out of the soft token).

Each user's first two creative rows train (in click order), the last one is held out,
as RecBole's leave-one-out split does. The held-out titles are generated with each
user's own signal and with another user's (shuffled); interest-hit, off-facet and
titles per ad are reported for both: reading the signal shows as own > shuffled.
Writes ``results/soft_token_reading/<run name>.json``.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
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


def bow_vectors(creative, profiles: list[str]) -> torch.Tensor:
    """``[n_users, H]``: mean word embedding of each profile, at a word embedding's norm."""
    embed = creative.llm.get_input_embeddings()
    with torch.no_grad():
        rows = torch.stack([embed(torch.tensor(ids)).mean(0) for ids in creative.token_ids(profiles)])
        return rows * (creative.mean_token_norm() / rows.norm(dim=-1, keepdim=True))


class VocabProjector(torch.nn.Module):
    """Soft token = a learnt mixture of the creative LLM's word embeddings of the profiles'
    tokens; ``align_loss`` pulls the mixture towards each user's profile words, IDF-weighted."""

    def __init__(self, size: int, creative, profiles: list[str]):
        super().__init__()
        ids = creative.token_ids(profiles)
        vocab = sorted({t for row in ids for t in row})
        index = {t: i for i, t in enumerate(vocab)}
        df = torch.zeros(len(vocab))
        for row in ids:
            df[[index[t] for t in set(row)]] += 1
        idf = torch.log(len(ids) / df)
        targets = torch.zeros(len(ids), len(vocab))
        for user, row in enumerate(ids):
            for t in row:
                targets[user, index[t]] += idf[index[t]]
        self.register_buffer("targets", targets / targets.sum(-1, keepdim=True))  # [n_users, V]
        self.register_buffer("anchors", creative.llm.get_input_embeddings().weight[vocab].detach().clone())  # [V, H]
        self.linear = torch.nn.Linear(size, len(vocab), bias=False)

    def logits(self, vecs: torch.Tensor) -> torch.Tensor:
        return self.linear(F.rms_norm(vecs, vecs.shape[-1:]))

    def forward(self, vecs: torch.Tensor) -> torch.Tensor:
        return self.logits(vecs).softmax(-1) @ self.anchors

    def align_loss(self, vecs: torch.Tensor, users: list[int]) -> torch.Tensor:
        return -(self.targets[users] * self.logits(vecs).log_softmax(-1)).sum(-1).mean()


def novel_weights(creative, target: list[int], original: str, weight: float) -> list[float]:
    """``weight`` for target tokens not in the original title (the rewrite), 1 for the rest."""
    known = set(creative.token_ids([original])[0]) | set(creative.token_ids([" " + original])[0])
    return [1.0 if t in known else weight for t in target]


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
        from recbole_hllm.model.heads import SoftTokenProjector

        self.args, self.settings = args, settings
        self.data = build()
        self.ads, self.train_rows, self.test_rows = split_rows(self.data, args.eval_pairs)
        self.users = self.data.users
        if args.task == "facet_name":  # the answer depends on the user alone: hold whole users out
            held_out = {u for u, _ in self.test_rows}
            self.train_rows = [row for row in self.train_rows if row[0] not in held_out]
        self.creative = CreativeLLM(settings, torch.device("cpu"))
        text = settings["creative_prompt"]
        if args.decode_profile:
            text = "Rewrite the ad title for this user.\nUser: {user}\nInterests: {profile}\nAd: {description}\nTitle:"
        if args.task == "facet_name":
            text = "User: {user}\nTop interest:"
        self.template = PromptTemplate(text, "creative_prompt")
        self.profile_template = PromptTemplate(settings["profile_prompt"], "profile_prompt")
        self.vectors, self.projector = None, None
        if args.signal == "oracle":
            self.vectors = torch.tensor([oracle_vector(u.final_ranking) for u in self.users])
            if args.projector == "vocab":
                self.projector = VocabProjector(10, self.creative, [u.profile for u in self.users])
            else:
                self.projector = SoftTokenProjector(10, self.creative.hidden_size, self.creative.mean_token_norm())
        elif args.signal == "bow":
            self.vectors, self.projector = bow_vectors(self.creative, [u.profile for u in self.users]), torch.nn.Identity()

    def soft_tokens(self, users: list[int]):
        return self.projector(self.vectors[users]) if self.vectors is not None else None

    def prompt(self, rows, profiles: list[str] | None = None):
        """(before ids, soft tokens, after ids) for rows ``(user, creative)``; ``profiles``
        fill the decode-profile template (default: the users' own)."""
        profiles = profiles or [self.users[u].profile for u, _ in rows]
        parts = [self.template.split(title=self.ads[r.item_id].title, description=self.ads[r.item_id].description,
                                     profile=p) for (_, r), p in zip(rows, profiles)]
        if self.args.signal in TEXT_SIGNALS:
            words = [self.users[u].profile if self.args.signal == "text" else self.users[u].final_ranking[0]
                     for u, _ in rows]
            parts = [(b + w + " ", a) for (b, a), w in zip(parts, words)]
        users = [u for u, _ in rows]
        return (self.creative.token_ids([b for b, _ in parts]), self.soft_tokens(users),
                self.creative.token_ids([a for _, a in parts]))

    def target(self, row) -> str:
        user, creative_row = row
        return " " + self.users[user].final_ranking[0] if self.args.task == "facet_name" else creative_row.title

    def loss(self, batch) -> torch.Tensor:
        c, args = self.creative, self.args
        before, soft, after = self.prompt(batch)
        targets = c.target_ids([self.target(row) for row in batch])
        weights = None
        if args.novel_weight != 1.0:
            weights = [novel_weights(c, t, self.ads[r.item_id].title, args.novel_weight) for t, (_, r) in zip(targets, batch)]
        loss = c.loss(before, soft, after, targets, weights)
        users, profiles = [u for u, _ in batch], c.target_ids([self.users[u].profile for u, _ in batch])
        if isinstance(self.projector, VocabProjector):
            loss = loss + self.projector.align_loss(self.vectors[users], users)
        if args.decode_profile:  # the profile right after the soft token, teacher-forced
            loss = loss + c.loss(before, soft, c.token_ids(["\nInterests:"] * len(batch)), profiles)
        if args.recon and soft is not None:
            recon_before, recon_after = self.profile_template.split()
            loss = loss + c.loss(c.token_ids([recon_before] * len(batch)), self.soft_tokens(users),
                                 c.token_ids([recon_after] * len(batch)), profiles)
        return loss

    def optimizer(self) -> torch.optim.Optimizer:
        params = [{"params": [p for p in self.creative.parameters() if p.requires_grad],
                   "lr": self.settings["creative_learning_rate"]}]
        if self.projector is not None and list(self.projector.parameters()):
            params.append({"params": list(self.projector.parameters()), "lr": self.settings["projector_learning_rate"]})
        return torch.optim.Adam(params)

    @torch.no_grad()
    def generate(self, rows, signal_users: list[int]) -> tuple[list[str], list[str]]:
        """Titles (and decoded profiles) for ``rows`` with the signals of ``signal_users``."""
        decoding = dict(max_new_tokens=self.settings["generation_max_new_tokens"], do_sample=False)
        titles, profiles = [], []
        for s in range(0, len(rows), 32):
            pairs = [(u, r) for u, (_, r) in zip(signal_users[s : s + 32], rows[s : s + 32])]
            before, soft, after = self.prompt(pairs)
            decoded = None
            if self.args.decode_profile:  # the profile from the soft token, then the title after it
                interests = self.creative.token_ids(["\nInterests:"] * len(pairs))
                decoded = self.creative.generate(before, soft, interests, **decoding)[0]
                profiles += decoded
                before, soft, after = self.prompt(pairs, decoded)
            titles += self.creative.generate(before, soft, after, **decoding)[0]
        return titles, profiles


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
    titles, profiles = exp.generate(rows, signal_users)
    truth = [exp.users[u].final_ranking[0] if exp.args.task == "facet_name" else r.facet for u, r in rows]
    hits = [facet in facets_in_text(t) for facet, t in zip(truth, titles)]
    off = [bool(facets_in_text(t) - exp.ads[r.item_id].facets) for (_, r), t in zip(rows, titles)]
    per_ad: dict[str, set] = {}
    for (_, r), t in zip(rows, titles):
        per_ad.setdefault(r.item_id, set()).add(t)
    counts = {k: sum(1 for _, r in rows if r.item_id == k) for k in per_ad}
    multi = [len(v) for k, v in per_ad.items() if counts[k] > 1]
    result = {"interest_hit": round(sum(hits) / len(hits), 4), "off_facet": round(sum(off) / len(off), 4),
              "titles_per_ad": round(sum(multi) / max(len(multi), 1), 3),
              "examples": [[r.title, t] for (_, r), t in list(zip(rows, titles))[:5]]}
    if profiles:  # does the decoded profile name the user's top facet first?
        tops = [exp.users[u].final_ranking[0] for u in signal_users]
        result["profile_top_facet"] = round(
            sum(top in facets_in_text(p.split(";")[0]) for top, p in zip(tops, profiles)) / len(profiles), 4)
        result["profile_examples"] = profiles[:3]
    return result


def run_name(args) -> str:
    flags = [args.task] if args.task != "title" else []
    flags += [f for f, on in (("recon", args.recon), ("decode", args.decode_profile),
                              ("vocab", args.projector == "vocab")) if on]
    flags += [f"novel{args.novel_weight:g}"] if args.novel_weight != 1.0 else []
    return "-".join([args.signal, f"{args.steps}x{args.batch_size}", *flags])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--signal", choices=("oracle", "bow", "none", *TEXT_SIGNALS), default="oracle")
    parser.add_argument("--task", choices=("title", "facet_name"), default="title")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-pairs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recon", action="store_true", help="also train the reconstruction loss (same projector)")
    parser.add_argument("--decode-profile", action="store_true", help="write the profile from U first, then the title")
    parser.add_argument("--projector", choices=("linear", "vocab"), default="linear")
    parser.add_argument("--novel-weight", type=float, default=1.0, help="loss weight of the rewrite's new tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="HLLMCreator yaml overrides")
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    overrides = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    exp = Experiment(args, load_settings(overrides))
    report = {"run": run_name(args), "signal": args.signal, "task": args.task, "recon": args.recon,
              "decode_profile": args.decode_profile, "projector": args.projector, "novel_weight": args.novel_weight,
              "steps": args.steps, "batch_size": args.batch_size, "overrides": overrides,
              "eval_pairs": len(exp.test_rows), **train(exp, args.steps, args.batch_size, args.seed)}
    exp.creative.eval()
    own = [u for u, _ in exp.test_rows]
    report["own"] = score(exp, own)
    print("own", json.dumps(report["own"]), flush=True)
    if args.signal != "none":
        shuffled = own[:]
        random.Random(1).shuffle(shuffled)
        report["shuffled"] = score(exp, shuffled)
        print("shuffled", json.dumps(report["shuffled"]), flush=True)
    out = Path(args.out or ROOT / "results" / "soft_token_reading" / f"{report['run']}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("own", "shuffled")}))


if __name__ == "__main__":
    main()
