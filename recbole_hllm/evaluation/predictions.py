"""Predictions files: JSON lines of generated titles, read into :class:`TitleRecord` rows.

A row has ``user`` and ``item`` (or RecBole's ``user_id`` and ``item_id``) and
``generated``; ``original``, ``reference``, ``history`` (the texts the user clicked
before) and ``ad_text`` are used when present. What a row lacks may come from the
dataset the ids belong to (:func:`build_records`).
"""
from __future__ import annotations

import json
import os

from recbole_hllm.errors import InvalidInputError, UserFileNotFoundError
from recbole_hllm.evaluation.generation import TitleRecord

KEY_ALIASES = {"user": "user_id", "item": "item_id"}  # our name -> RecBole's field name


def read_jsonl(path: str, required: tuple) -> list[dict]:
    """Rows of a JSON-lines file; ``user_id``/``item_id`` are read as ``user``/``item``."""
    if not os.path.isfile(path):
        raise UserFileNotFoundError(f"{path}: no such predictions file")
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{path}:{line_no}: not JSON ({exc.msg})") from None
            for key, alias in KEY_ALIASES.items():
                if key not in row and alias in row:
                    row[key] = row[alias]
            missing = [k if k not in KEY_ALIASES else f"{k} (or {KEY_ALIASES[k]})" for k in required if k not in row]
            if missing:
                raise InvalidInputError(f"{path}:{line_no}: missing {', '.join(missing)}")
            rows.append(row)
    if not rows:
        raise InvalidInputError(f"{path}: no predictions")
    return rows


def history_before(clicks: list[str], item: str) -> list[str]:
    """The clicks before the user's latest click on ``item`` (all clicks if never clicked)."""
    if item in clicks:
        return clicks[:len(clicks) - 1 - clicks[::-1].index(item)]
    return clicks


def build_records(rows: list[dict], source, references: dict) -> list[TitleRecord]:
    """One record per row; its context comes from the row where it has it, else from
    the dataset ``source`` (None: the row alone)."""
    records = []
    for row in rows:
        user, item = str(row["user"]), str(row["item"])
        if source is not None and item not in source.titles:
            raise InvalidInputError(f"item {item!r} is not in dataset {source.name!r}")
        original, ad_text, history = row.get("original") or "", row.get("ad_text") or "", row.get("history")
        if source is not None:
            original = original or source.titles[item]
            ad_text = ad_text or ", ".join(x for x in (source.titles[item], source.descriptions[item]) if x)
            if history is None:
                history = [source.titles[i] for i in history_before(source.histories.get(user, []), item)][-50:]
        if isinstance(history, str) or not all(isinstance(h, str) for h in history or []):
            raise InvalidInputError(f"user {user}, item {item}: 'history' must be a list of texts")
        records.append(TitleRecord(
            user=user, item=item, generated=str(row.get("generated") or ""),
            reference=references.get((user, item), row.get("reference") or ""), original=original,
            history=list(history or []), ad_text=ad_text))
    return records
