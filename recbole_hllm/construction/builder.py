"""The three-step chain of thought that turns click histories into personalised titles.

For each user: (1) an interest profile from the recent clicks; for each of the user's
ads: (2) a rewrite of the ad's title for that profile, (3) a fact filter: the
deterministic check (``factcheck.py``) and then an LLM verdict; a row is kept only
when both pass. Every reply must match its step's JSON schema; a reply that does not
is re-asked up to ``repair_retries`` times with the error, then rejected with it.

Work proceeds in chunks of users so the backend can batch (local) or run requests
concurrently (openai). Each finished result goes to the journal at once; the final
files are written atomically from the journal at the end:

* ``<out>``: the ``.creative`` file (kept rows, with the profile description);
* ``<stem>.rejects.jsonl``: every rejected row with its reason;
* ``<stem>.profiles.jsonl``: the full profile JSON per user;
* ``<stem>.summary.json``: counts, failed calls, tokens and wall time.

A call that fails for good (network, server) leaves its rows unfinished, not
rejected: they are counted in the summary and a rerun finishes them.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from logging import getLogger

from recbole_hllm.chat.backend import ChatBackend, ChatRequest
from recbole_hllm.construction.ads import UserTask, plan_tasks, select_users
from recbole_hllm.construction.factcheck import FactCheckRules, check_title
from recbole_hllm.construction.journal import Journal
from recbole_hllm.construction.schema import SCHEMAS, SchemaError, parse_reply
from recbole_hllm.construction.source import SourceData


@dataclass
class BuildOptions:
    out: str
    n_users: int | None = 20
    user_ids: list[str] | None = None
    ads: str = "next"
    ads_per_user: int = 3
    checkpoint: str | None = None  # ads = "matching": the HLLM / HLLMCreator checkpoint that ranks them
    seed: int = 0
    chunk_users: int = 8
    progress: bool = True
    restart: bool = False


@dataclass
class _Answer:
    obj: dict | None = None
    raw: str = ""
    error: str | None = None  # schema failure after all repairs
    failed: str | None = None  # the call itself failed
    repairs: int = 0


@dataclass
class BuildSummary:
    dataset: str
    backend: str
    out: str
    users: int = 0
    users_skipped_too_few_clicks: int = 0
    pairs: int = 0
    kept: int = 0
    kept_unchanged_title: int = 0
    rejected: dict = field(default_factory=dict)
    unfinished_pairs: int = 0
    failed_calls: int = 0
    repair_asks: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_seconds: float = 0.0
    pairs_per_minute: float = 0.0
    completion_tokens_per_second: float = 0.0


def paths_for(out: str) -> dict[str, str]:
    stem = out.removesuffix(".creative")
    return {"creative": out, "journal": f"{stem}.journal.jsonl", "rejects": f"{stem}.rejects.jsonl",
            "profiles": f"{stem}.profiles.jsonl", "summary": f"{stem}.summary.json"}


class CreativeBuilder:
    def __init__(self, source: SourceData, backend: ChatBackend, settings: dict, options: BuildOptions):
        self.source, self.backend, self.settings, self.options = source, backend, settings, options
        self.rules = FactCheckRules.from_settings(settings)
        self.paths = paths_for(options.out)
        self.repair_asks = 0

    def fingerprint(self) -> str:
        identity = {"dataset": self.source.name, "backend": getattr(self.backend, "identity", self.backend.name),
                    "ads": self.options.ads, "ads_per_user": self.options.ads_per_user,
                    "checkpoint": self.options.checkpoint,
                    "seed": self.options.seed, "settings": self.settings}
        return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def run(self) -> BuildSummary:
        start, stats_before = time.perf_counter(), self.backend.stats.as_dict()
        users = select_users(self.source, self.options.n_users, self.options.user_ids, self.options.seed)
        tasks, skipped = plan_tasks(self.source, users, self.options.ads, self.options.ads_per_user,
                                    self.settings["history_len"], self.options.seed, self.options.checkpoint)
        if skipped:
            getLogger(__name__).warning("%d users have too few clicks for %d ads plus a history; skipped: %s",
                                        len(skipped), self.options.ads_per_user, ", ".join(skipped[:5]))
        os.makedirs(os.path.dirname(os.path.abspath(self.options.out)), exist_ok=True)
        journal = Journal(self.paths["journal"], self.fingerprint(), restart=self.options.restart)
        self._process(tasks, journal)
        summary = self._finish(tasks, skipped, journal, start, stats_before)
        return summary

    # --- the three steps, chunk by chunk -------------------------------------------
    def _process(self, tasks: list[UserTask], journal: Journal) -> None:
        from tqdm.auto import tqdm

        # read the journal once; chunks then update these as they append
        done_pairs = {(r["user"], r["item"]) for r in journal.records if r["kind"] == "row"}
        profiles = {r["user"]: r for r in journal.records if r["kind"] == "profile"}
        counts = Counter(r["status"] for r in journal.records if r["kind"] == "row")
        todo = [t for t in tasks if any((t.user, ad) not in done_pairs for ad in t.ads)]
        total = sum(1 for t in todo for ad in t.ads if (t.user, ad) not in done_pairs)
        bar = tqdm(total=total, unit="pair", desc="creatives", disable=not self.options.progress)
        try:
            for start in range(0, len(todo), self.options.chunk_users):
                rows = self._process_chunk(todo[start:start + self.options.chunk_users], journal, done_pairs,
                                           profiles)
                counts.update(r["status"] for r in rows)
                bar.update(len(rows))
                bar.set_postfix(kept=counts["kept"], rejected=counts["rejected"])
        finally:
            bar.close()

    def _process_chunk(self, chunk: list[UserTask], journal: Journal, done_pairs: set, profiles: dict) -> list[dict]:
        new_profiles = self._profiles([t for t in chunk if t.user not in profiles])
        journal.append(new_profiles)
        profiles.update((r["user"], r) for r in new_profiles)
        pairs = [(t, ad) for t in chunk if t.user in profiles for ad in t.ads if (t.user, ad) not in done_pairs]
        bad_profile = [(t, ad) for t, ad in pairs if not profiles[t.user]["ok"]]
        rows = [self._row(t.user, ad, "rejected", "invalid_profile", profiles[t.user]["reason"])
                for t, ad in bad_profile]
        good = [(t, ad) for t, ad in pairs if profiles[t.user]["ok"]]
        rows += self._rewrite_and_filter(good, profiles)
        journal.append(rows)
        done_pairs.update((r["user"], r["item"]) for r in rows)
        return rows

    def _profiles(self, tasks: list[UserTask]) -> list[dict]:
        prompt = self.settings["profile"]
        conversations = [self._messages("profile", prompt.format(
            history="\n".join(f"- {self.source.item_line(i)}" for i in t.history), n_items=len(t.history)))
            for t in tasks]
        records = []
        for task, answer in zip(tasks, self._ask("profile", conversations)):
            if answer.failed:
                continue  # unfinished: a rerun asks again
            error = answer.error or self._copied_example(answer.obj)
            record = {"kind": "profile", "user": task.user, "history": task.history, "ok": error is None}
            if error is None:
                record["profile"] = _deduplicated(answer.obj)
            else:
                record.update(reason=error, raw=answer.raw)
            records.append(record)
        return records

    def _copied_example(self, profile: dict) -> str | None:
        """Small models copy the worked example instead of reading the history: a profile
        whose description is the example's is rejected, not learnt from."""
        mine = " ".join(profile["profile"].lower().split())
        for example in (self.settings.get("examples") or {}).get("profile") or []:
            if mine == " ".join(str(example["answer"]["profile"]).lower().split()):
                return "profile reply: copies the worked example's profile instead of describing this user"
        return None

    def _rewrite_and_filter(self, pairs: list, profiles: dict) -> list[dict]:
        conversations = [self._messages("rewrite", self._rewrite_prompt(profiles[t.user]["profile"], ad))
                         for t, ad in pairs]
        rows, candidates = [], []
        for (task, ad), answer in zip(pairs, self._ask("rewrite", conversations)):
            if answer.failed:
                continue
            if answer.obj is None:
                rows.append(self._row(task.user, ad, "rejected", "invalid_rewrite", answer.error, raw=answer.raw))
                continue
            new_title = " ".join(answer.obj["title"].split())
            reasons = check_title(new_title, self.source.titles[ad], self.source.descriptions[ad], self.rules)
            extra = {"title": new_title, "selling_points": answer.obj["selling_points"],
                     "matched_profile": answer.obj["matched_profile"]}
            if reasons:
                rows.append(self._row(task.user, ad, "rejected", "fact_check", "; ".join(reasons), **extra))
            else:
                candidates.append((task, ad, extra))
        return rows + self._verdicts(candidates, profiles)

    def _verdicts(self, candidates: list, profiles: dict) -> list[dict]:
        prompt = self.settings["verdict"]
        conversations = [self._messages("verdict", prompt.format(
            title=self.source.titles[ad], description=self.source.descriptions[ad] or "(none)",
            new_title=extra["title"])) for _, ad, extra in candidates]
        rows = []
        for (task, ad, extra), answer in zip(candidates, self._ask("verdict", conversations)):
            if answer.failed:
                continue
            if answer.obj is None:
                rows.append(self._row(task.user, ad, "rejected", "invalid_verdict", answer.error, **extra))
            elif not answer.obj["consistent"]:
                rows.append(self._row(task.user, ad, "rejected", "llm_verdict",
                                      answer.obj.get("reason", ""), **extra))
            else:
                rows.append(self._row(task.user, ad, "kept", None, answer.obj.get("reason", ""),
                                      profile=profiles[task.user]["profile"]["profile"], **extra))
        return rows

    def _rewrite_prompt(self, profile: dict, ad: str) -> str:
        interests = profile["long_term_interests"] + profile["short_term_interests"] + profile["preferences"]
        return self.settings["rewrite"].format(
            profile=profile["profile"], interests=", ".join(dict.fromkeys(interests)) or "(none)",
            title=self.source.titles[ad], description=self.source.descriptions[ad] or "(none)",
            max_added_words=self.settings["max_added_words"])

    def _row(self, user: str, item: str, status: str, reason_kind: str | None, reason: str, **extra) -> dict:
        return {"kind": "row", "user": user, "item": item, "status": status, "reason_kind": reason_kind,
                "reason": reason, "original": self.source.titles[item], **extra}

    def _messages(self, step: str, prompt: str) -> list[dict]:
        """System prompt, the step's worked examples as earlier turns, then ``prompt``."""
        messages = [{"role": "system", "content": self.settings["system"].strip()}]
        for example in (self.settings.get("examples") or {}).get(step) or []:
            messages += [{"role": "user", "content": self.settings[step].format(**example["slots"])},
                         {"role": "assistant", "content": json.dumps(example["answer"], ensure_ascii=False)}]
        return messages + [{"role": "user", "content": prompt}]

    def _ask(self, step: str, conversations: list[list[dict]]) -> list[_Answer]:
        """One chat call per conversation; replies failing the schema are re-asked."""
        answers = [_Answer() for _ in conversations]
        conversations = list(conversations)
        pending = list(range(len(conversations)))
        max_tokens = self.settings["max_tokens"][step]
        for attempt in range(self.settings["repair_retries"] + 1):
            if not pending:
                break
            if attempt:
                self.repair_asks += len(pending)
            replies = self.backend.chat([ChatRequest(conversations[i], max_tokens=max_tokens,
                                                     temperature=self.settings["temperature"],
                                                     json_schema=SCHEMAS[step]) for i in pending])
            still = []
            for i, reply in zip(pending, replies):
                if not reply.ok:
                    answers[i] = _Answer(failed=reply.error, repairs=attempt)
                    continue
                try:
                    answers[i] = _Answer(obj=parse_reply(reply.text, step), raw=reply.text, repairs=attempt)
                except SchemaError as exc:
                    answers[i] = _Answer(error=f"{step} reply: {exc}", raw=reply.text, repairs=attempt)
                    conversations[i] = conversations[i] + [
                        {"role": "assistant", "content": reply.text},
                        {"role": "user", "content": self.settings["repair"].format(error=exc)}]
                    still.append(i)
            pending = still
        return answers

    # --- final files -------------------------------------------------------------
    def _finish(self, tasks, skipped, journal: Journal, start: float, stats_before: dict) -> BuildSummary:
        planned = {(t.user, ad) for t in tasks for ad in t.ads}
        rows = [r for r in journal.records if r["kind"] == "row" and (r["user"], r["item"]) in planned]
        kept = [r for r in rows if r["status"] == "kept"]
        rejected = [r for r in rows if r["status"] == "rejected"]
        self._write_creative(kept)
        _write_jsonl(self.paths["rejects"], rejected)
        users = {t.user for t in tasks}
        _write_jsonl(self.paths["profiles"], [r for r in journal.records
                                              if r["kind"] == "profile" and r["user"] in users])
        stats = {k: v - stats_before.get(k, 0) for k, v in self.backend.stats.as_dict().items()}
        wall = time.perf_counter() - start
        summary = BuildSummary(
            dataset=self.source.name, backend=getattr(self.backend, "identity", self.backend.name),
            out=self.options.out, users=len(tasks), users_skipped_too_few_clicks=len(skipped),
            pairs=len(planned), kept=len(kept),
            kept_unchanged_title=sum(r["title"].lower() == r["original"].lower() for r in kept),
            rejected=dict(Counter(r["reason_kind"] for r in rejected)),
            unfinished_pairs=len(planned) - len(rows), failed_calls=stats["failed_calls"],
            repair_asks=self.repair_asks, calls=stats["calls"], prompt_tokens=stats["prompt_tokens"],
            completion_tokens=stats["completion_tokens"], wall_seconds=round(wall, 1),
            pairs_per_minute=round(60 * len(rows) / wall, 2) if wall else 0.0,
            completion_tokens_per_second=round(stats["completion_tokens"] / wall, 2) if wall else 0.0)
        _atomic_write(self.paths["summary"], json.dumps(asdict(summary), indent=2) + "\n")
        return summary

    def _write_creative(self, kept: list[dict]) -> None:
        uid, iid = self.source.uid_field, self.source.iid_field
        lines = [f"{uid}:token\t{iid}:token\ttitle:token_seq\tprofile:token_seq"]
        lines += ["\t".join([r["user"], r["item"], _cell(r["title"]), _cell(r["profile"])]) for r in kept]
        _atomic_write(self.paths["creative"], "\n".join(lines) + "\n")


def _deduplicated(profile: dict) -> dict:
    """The profile with repeated list entries removed (small models repeat themselves)."""
    return {key: list(dict.fromkeys(value)) if isinstance(value, list) else value for key, value in profile.items()}


def _cell(text: str) -> str:
    """One field of a tab-separated atomic file: no tabs or line breaks inside."""
    return " ".join(str(text).split())


def _write_jsonl(path: str, records: list[dict]) -> None:
    _atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
