"""Pairwise LLM judge, as HLLM-Creator reports it: Good / Same / Bad and Adv.

For each (user, ad), the judge sees the user's recent clicks (and profile, if any),
the ad, and two titles, and says which one this user would prefer. Every pair is asked
twice with the titles' order swapped, so a judge that favours a position cancels out:
only two agreeing verdicts count (system 1 both times: Good; system 2 both times:
Bad); anything else, including "same", a disagreement or an unusable reply, is Same.
Adv = (Good - Bad) / Total. Identical titles are Same without asking.

Verdicts are cached in a JSONL file keyed by a hash of the backend and the exact
messages, so a rerun (or a larger run over the same pairs) costs nothing for what was
already judged. Prompts: ``properties/evaluation/judge.yaml``.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from recbole_hllm.chat.backend import ChatBackend, ChatRequest

VERDICT_SCHEMA = {
    "type": "object",
    "required": ["preferred"],
    "properties": {"preferred": {"enum": ["A", "B", "same"]}, "reason": {"type": "string", "maxLength": 200}},
}


@dataclass
class JudgeCase:
    user: str
    item: str
    ad: str
    history: list[str]
    title_1: str  # system 1 (e.g. the model)
    title_2: str  # system 2 (e.g. the original title)
    profile: str = ""


@dataclass
class JudgeResult:
    good: int = 0
    same: int = 0
    bad: int = 0
    unusable_replies: int = 0
    cached_calls: int = 0
    new_calls: int = 0
    verdicts: list = field(default_factory=list)  # per case: user, item, first, second, outcome

    @property
    def total(self) -> int:
        return self.good + self.same + self.bad

    @property
    def adv(self) -> float:
        return (self.good - self.bad) / self.total if self.total else 0.0

    def as_dict(self) -> dict:
        return {"good": self.good, "same": self.same, "bad": self.bad, "total": self.total,
                "adv": round(self.adv, 4), "unusable_replies": self.unusable_replies,
                "cached_calls": self.cached_calls, "new_calls": self.new_calls}


def default_judge_settings() -> dict:
    from recbole_hllm.construction.prompts import default_settings_path

    path = default_settings_path().parent.parent / "evaluation" / "judge.yaml"
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def outcome(first: str | None, second: str | None) -> str:
    """Good / Same / Bad from the two orders' answers.

    ``first``: the answer when system 1 was title A; ``second``: when it was title B.
    """
    first_winner = {"A": 1, "B": 2}.get(first or "")
    second_winner = {"A": 2, "B": 1}.get(second or "")
    if first_winner is not None and first_winner == second_winner:
        return "good" if first_winner == 1 else "bad"
    return "same"


class PairwiseJudge:
    def __init__(self, backend: ChatBackend, settings: dict | None = None, cache_path: str | None = None):
        self.backend = backend
        self.settings = settings or default_judge_settings()
        self.cache_path = cache_path
        self.cache = _read_cache(cache_path)

    def judge(self, cases: list[JudgeCase], progress: bool = True) -> JudgeResult:
        from tqdm.auto import tqdm

        result = JudgeResult()
        asked = [c for c in cases if _same_text(c.title_1, c.title_2) is False]
        conversations = [self._messages(c, c.title_1, c.title_2) for c in asked]
        conversations += [self._messages(c, c.title_2, c.title_1) for c in asked]
        answers = self._answers(conversations, result, progress, tqdm)
        first, second = answers[:len(asked)], answers[len(asked):]
        answer_of = {id(c): (a, b) for c, a, b in zip(asked, first, second)}
        for case in cases:
            a, b = answer_of.get(id(case), (None, None))
            verdict = outcome(a, b) if id(case) in answer_of else "same"
            setattr(result, verdict, getattr(result, verdict) + 1)
            result.verdicts.append({"user": case.user, "item": case.item, "title_1": case.title_1,
                                    "title_2": case.title_2, "first": a, "second": b, "outcome": verdict})
        return result

    def _answers(self, conversations, result: JudgeResult, progress: bool, tqdm) -> list[str | None]:
        keys = [self._key(m) for m in conversations]
        todo = [i for i, k in enumerate(keys) if k not in self.cache]
        result.cached_calls, result.new_calls = len(keys) - len(todo), len(todo)
        batch = max(1, getattr(self.backend, "batch_size", 0) or getattr(self.backend, "concurrency", 8))
        with tqdm(total=len(todo), unit="call", desc="judge", disable=not progress) as bar:
            for start in range(0, len(todo), batch):
                chunk = todo[start:start + batch]
                replies = self.backend.chat([ChatRequest(conversations[i], max_tokens=self.settings["max_tokens"],
                                                         temperature=self.settings["temperature"],
                                                         json_schema=VERDICT_SCHEMA) for i in chunk])
                fresh = {}
                for i, reply in zip(chunk, replies):
                    if reply.ok:  # failed calls are not cached: a rerun asks again
                        fresh[keys[i]] = _preferred(reply.text)
                self.cache.update(fresh)
                _append_cache(self.cache_path, fresh)
                bar.update(len(chunk))
        answers = [self.cache.get(k) for k in keys]
        result.unusable_replies = sum(a is None for a in answers)
        return answers

    def _messages(self, case: JudgeCase, title_a: str, title_b: str) -> list[dict]:
        history = case.history[-self.settings["history_len"]:]
        prompt = self.settings["prompt"].format(
            history="\n".join(f"- {h}" for h in history) or "(none)", profile=case.profile or "(none)",
            ad=case.ad, title_a=title_a, title_b=title_b)
        return [{"role": "system", "content": self.settings["system"].strip()}, {"role": "user", "content": prompt}]

    def _key(self, messages: list[dict]) -> str:
        identity = getattr(self.backend, "identity", self.backend.name)
        text = json.dumps([identity, self.settings["max_tokens"], self.settings["temperature"], messages])
        return hashlib.sha256(text.encode()).hexdigest()


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


def _preferred(text: str) -> str | None:
    """``A``, ``B``, ``same``, or None for a reply that does not say."""
    from recbole_hllm.construction.schema import first_json_object

    try:
        value = json.loads(first_json_object(text)).get("preferred")
    except (ValueError, AttributeError):
        return None
    value = str(value).strip()
    return {"a": "A", "b": "B", "same": "same"}.get(value.lower())


def _read_cache(path: str | None) -> dict:
    cache = {}
    if path and os.path.exists(path):
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash: asked again
            cache[record["key"]] = record["preferred"]
    return cache


def _append_cache(path: str | None, fresh: dict) -> None:
    if not path or not fresh:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps({"key": k, "preferred": v}) + "\n" for k, v in fresh.items()))
        f.flush()
        os.fsync(f.fileno())
