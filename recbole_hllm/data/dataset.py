"""RecBole dataset class for HLLM-style models.

Differences from RecBole's ``SequentialDataset``:

* the item text fields named by ``text_fields`` are always loaded from ``.item``;
* a missing dataset folder is an error naming where it looked (RecBole would try to
  download an unknown name and exit);
* a dataset left empty by RecBole's filters is an error naming the filters;
* with ``train_sequence_level: True`` (default) the training split keeps one row per
  window of ``MAX_ITEM_LIST_LENGTH`` targets per user instead of one row per prefix:
  HLLM supervises every position of a sequence, so the prefix rows would only repeat
  the same targets. Validation and test rows are RecBole's own, untouched.
"""
from __future__ import annotations

import os

import numpy as np
from recbole.data.dataset import SequentialDataset

from recbole_hllm.config import validate_config
from recbole_hllm.errors import UserError, UserFileNotFoundError


class HLLMDataset(SequentialDataset):
    def __init__(self, config):
        validate_config(config)
        _check_data_folder(config)
        _ensure_text_fields_loaded(config)
        try:
            super().__init__(config)
        except ValueError as exc:
            if "Some feat is empty" not in str(exc):
                raise
            raise _empty_dataset_error(config) from exc
        if self.inter_num == 0:
            raise _empty_dataset_error(config)

    def build(self):
        datasets = super().build()
        if self.config["train_sequence_level"] and self.config["eval_args"]["split"].get("LS"):
            datasets[0] = _keep_window_ends(datasets[0], self.config["MAX_ITEM_LIST_LENGTH"],
                                            self._train_rows_to_keep(datasets[0]))
        return datasets

    def _train_rows_to_keep(self, train_dataset):
        """Rows kept even when they do not end a window (subclasses: rows with targets)."""
        return None


class EmptyDatasetError(UserError, ValueError):
    pass


def _empty_dataset_error(config) -> EmptyDatasetError:
    return EmptyDatasetError(
        f"Dataset {config['dataset']!r} in {config['data_path']} has no interactions left "
        f"after RecBole's filtering (user_inter_num_interval={config['user_inter_num_interval']}, "
        f"item_inter_num_interval={config['item_inter_num_interval']}, "
        f"val_interval={config['val_interval']}); relax these settings."
    )


def _check_data_folder(config) -> None:
    path = config["data_path"]
    if not os.path.isdir(path):
        raise UserFileNotFoundError(
            f"Dataset {config['dataset']!r} not found: looked for the folder {os.path.abspath(path)} "
            f"(data_path + dataset name) holding {config['dataset']}.inter. Set data_path to the "
            "folder that contains it; recbole_hllm never downloads data."
        )
    inter = os.path.join(path, f"{config['dataset']}.inter")
    if not os.path.isfile(inter) and not config["benchmark_filename"]:
        raise UserFileNotFoundError(f"Dataset {config['dataset']!r}: {os.path.abspath(inter)} does not exist.")


def _ensure_text_fields_loaded(config) -> None:
    """Add the time field to ``load_col['inter']`` and the text fields to ``load_col['item']``."""
    load_col = config["load_col"]
    if load_col is None:
        return  # RecBole loads every column
    def with_fields(columns, fields):
        columns = list(columns or [])
        return columns + [f for f in fields if f and f not in columns]

    config["load_col"] = {
        **load_col,
        # sequences are ordered by time: RecBole's sample defaults do not load it
        "inter": with_fields(load_col.get("inter"), [config["USER_ID_FIELD"], config["ITEM_ID_FIELD"],
                                                     config["TIME_FIELD"]]),
        "item": with_fields(load_col.get("item"), [config["ITEM_ID_FIELD"], *config["text_fields"]]),
    }


def _keep_window_ends(train_dataset, window: int, also_keep=None):
    """Keep the training rows whose targets end a window of ``window`` positions.

    Rows are sorted by user then time and row r of a user predicts that user's item
    r + 1 from up to ``window`` previous items. The user's last row covers targets of
    rows last-window+1 .. last, the row ``window`` before it the ones before, and so on:
    every target is supervised exactly once.
    """
    uid_raw = train_dataset.inter_feat[train_dataset.uid_field].numpy()
    n = len(uid_raw)
    if n == 0:
        return train_dataset
    order = np.argsort(uid_raw, kind="stable")  # groups users, keeps each user's time order
    uid = uid_raw[order]
    starts = np.r_[0, np.flatnonzero(uid[1:] != uid[:-1]) + 1]
    ends = np.r_[starts[1:], n] - 1
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
    distance_to_last = ends[group] - np.arange(n)
    keep_mask = np.zeros(n, dtype=bool)
    keep_mask[order[distance_to_last % window == 0]] = True
    if also_keep is not None:
        keep_mask |= also_keep
    keep = np.flatnonzero(keep_mask)
    return train_dataset.copy(train_dataset.inter_feat[keep])
