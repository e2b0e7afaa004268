"""The ``<dataset>.creative`` atomic file: personalised titles (and user profiles).

Format (RecBole header style, tab-separated)::

    user_id:token  item_id:token  title:token_seq  [profile:token_seq]

Rows are mapped to RecBole's internal ids with RecBole's own token mapping. Rows whose
user or item RecBole does not know (filtered out, or never in ``.inter``) and rows
with an empty title are counted, reported with the first raw ids, and dropped.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from logging import getLogger

from recbole_hllm.errors import UserError, UserFileNotFoundError


class CreativeFileError(UserError, ValueError):
    pass


@dataclass
class CreativeTable:
    """Creative rows in internal ids; row r is (users[r], items[r], titles[r], profiles[r])."""

    users: list[int] = field(default_factory=list)
    items: list[int] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    dropped: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.users)

    def profile_of_user(self) -> dict[int, str]:
        return {u: p for u, p in zip(self.users, self.profiles) if p}


def creative_path(config) -> str:
    """``creative_file`` when set (e.g. ml-100k, whose folder is inside the recbole
    package), else ``<data_path>/<dataset>.creative``."""
    if config["creative_file"]:
        return os.path.expanduser(config["creative_file"])
    return os.path.join(config["data_path"], f"{config['dataset']}.creative")


def read_creative_file(path: str, dataset) -> CreativeTable:
    """Read ``path`` and map it onto ``dataset``'s ids (see module docstring)."""
    if not os.path.isfile(path):
        raise UserFileNotFoundError(
            f"HLLMCreator needs personalised titles: {os.path.abspath(path)} does not exist. "
            "Create it (header: user_id:token, item_id:token, title:token_seq[, profile:token_seq]) "
            "or use the shipped synthetic dataset (--dataset=ads-synth; regenerate it with "
            "`python -m recbole_hllm.data.synthetic_ads --out dataset`)."
        )
    uid_field, iid_field = dataset.uid_field, dataset.iid_field
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [h.split(":")[0] for h in next(reader, [])]
        columns = {name: i for i, name in enumerate(header)}
        for required in (uid_field, iid_field, "title"):
            if required not in columns:
                raise CreativeFileError(f"{path}: header {header} lacks the column {required!r}")
        table, unknown, empty = CreativeTable(), [], []
        user_ids, item_ids = dataset.field2token_id[uid_field], dataset.field2token_id[iid_field]
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise CreativeFileError(f"{path}:{line_no}: {len(row)} fields, header has {len(header)}")
            user, item = row[columns[uid_field]], row[columns[iid_field]]
            title = row[columns["title"]].strip()
            if user not in user_ids or item not in item_ids:
                unknown.append(f"{user}/{item}")
                continue
            if not title:
                empty.append(f"{user}/{item}")
                continue
            table.users.append(user_ids[user])
            table.items.append(item_ids[item])
            table.titles.append(title)
            table.profiles.append(row[columns["profile"]].strip() if "profile" in columns else "")
    table.dropped = {"unknown_user_or_item": len(unknown), "empty_title": len(empty)}
    logger = getLogger(__name__)
    if unknown:
        logger.warning("%s: dropped %d rows whose user or item RecBole does not know (filtered out or "
                       "absent from .inter); first user/item: %s", path, len(unknown), ", ".join(unknown[:5]))
    if empty:
        logger.warning("%s: dropped %d rows with an empty title; first user/item: %s",
                       path, len(empty), ", ".join(empty[:5]))
    if not table.users:
        raise CreativeFileError(f"{path}: no usable rows ({table.dropped})")
    return table
