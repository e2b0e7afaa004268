"""What the construction reads from a RecBole atomic dataset: each user's clicks in
time order and each item's prompt text.

The dataset is loaded by RecBole itself (``HLLM``'s dataset class, the project's
dataset yaml), so the items, text fields and filtering are exactly those a later
``run_recbole --model=HLLMCreator`` run sees, and ids are written back as raw tokens.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import numpy as np

from recbole_hllm.errors import InvalidInputError


@dataclass
class SourceData:
    """Raw-token view of a dataset: ``histories[user]`` is the user's items, oldest first."""

    name: str
    data_path: str
    histories: dict[str, list[str]]
    titles: dict[str, str]  # item -> the ad's original title (``title_field``)
    descriptions: dict[str, str]  # item -> the other text fields, "field: value, ..."
    title_field: str
    text_fields: list[str] = field(default_factory=list)
    uid_field: str = "user_id"
    iid_field: str = "item_id"

    @property
    def items(self) -> list[str]:
        return list(self.titles)

    def item_line(self, item: str) -> str:
        """One history line for the profile prompt."""
        details = self.descriptions[item]
        return f"{self.titles[item]} ({details})" if details else self.titles[item]


def load_source(dataset: str, data_path: str | None = None, title_field: str | None = None,
                config_file_list=None, config_dict: dict | None = None) -> SourceData:
    """Load ``dataset`` with RecBole and return its histories and item texts."""
    from recbole.config import Config
    from recbole.data import create_dataset

    import recbole_hllm  # noqa: F401  (registration and RecBole fixes)
    from recbole_hllm.data.item_text import item_field_texts

    settings = dict(config_dict or {})
    if data_path:
        settings["data_path"] = data_path
    settings.setdefault("state", "WARNING")
    argv, sys.argv = sys.argv, sys.argv[:1]  # RecBole's Config would read our own flags as its settings
    try:
        config = Config(model="HLLM", dataset=dataset, config_file_list=config_file_list, config_dict=settings)
    finally:
        sys.argv = argv
    data = create_dataset(config)
    text_fields = list(config["text_fields"])
    title_field = title_field or config["creative_title_field"] or text_fields[0]
    if title_field not in text_fields:
        raise InvalidInputError(f"title field {title_field!r} is not one of the dataset's text_fields {text_fields} "
                         f"(set --title-field or text_fields in the dataset yaml)")
    columns = {f: item_field_texts(data, f) for f in text_fields}
    item_tokens = data.field2id_token[data.iid_field]
    titles, descriptions = {}, {}
    for item in range(1, data.item_num):
        token = str(item_tokens[item])
        titles[token] = columns[title_field][item]
        descriptions[token] = ", ".join(f"{f}: {columns[f][item]}" for f in text_fields
                                        if f != title_field and columns[f][item])
    return SourceData(dataset, config["data_path"], _histories(data), titles, descriptions, title_field,
                      text_fields, data.uid_field, data.iid_field)


def _histories(data) -> dict[str, list[str]]:
    def column(name):  # a DataFrame column before build(), a tensor after
        return np.asarray(data.inter_feat[name])

    users, items = column(data.uid_field), column(data.iid_field)
    times = column(data.time_field) if data.time_field else np.arange(len(users))
    order = np.lexsort((np.arange(len(users)), times, users))  # by user, then time, then file order
    user_tokens, item_tokens = data.field2id_token[data.uid_field], data.field2id_token[data.iid_field]
    histories: dict[str, list[str]] = {}
    for row in order:
        histories.setdefault(str(user_tokens[users[row]]), []).append(str(item_tokens[items[row]]))
    return histories


def default_output(source: SourceData) -> str:
    """``<data_path>/<name>.creative``, or ``./<name>.creative`` when the dataset lives
    inside an installed package (ml-100k): never write into site-packages."""
    if "site-packages" in os.path.abspath(source.data_path) or not os.access(source.data_path, os.W_OK):
        return os.path.abspath(f"{source.name}.creative")
    return os.path.join(source.data_path, f"{source.name}.creative")
