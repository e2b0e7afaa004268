"""RecBole dataset for HLLMCreator: HLLM's dataset plus the ``.creative`` targets.

Each creative row (user, ad) is attached to ONE sequence row: the latest interaction
of that user with that ad (its history is everything before it). RecBole's
leave-one-out split then carries the creative row into train, valid or test together
with that interaction, so a test user's target never reaches training. The attachment
is the interaction field ``creative_index`` (row of the creative table, -1 for none).
"""
from __future__ import annotations

import numpy as np
import torch
from recbole.data.interaction import Interaction
from recbole.utils import FeatureSource, FeatureType

from recbole_hllm.data.creative import creative_path, read_creative_file
from recbole_hllm.data.dataset import HLLMDataset

CREATIVE_INDEX = "creative_index"


class HLLMCreatorDataset(HLLMDataset):
    def __init__(self, config):
        super().__init__(config)
        self.creative = read_creative_file(creative_path(config), self)

    def data_augmentation(self):
        super().data_augmentation()
        self._attach_creative_rows()

    def _attach_creative_rows(self) -> None:
        users = self.inter_feat[self.uid_field].numpy()
        targets = self.inter_feat[self.iid_field].numpy()
        times = self.inter_feat[self.time_field].numpy()
        latest_row = {}
        for row in np.lexsort((times, targets, users)):  # ascending time within (user, item)
            latest_row[(int(users[row]), int(targets[row]))] = row
        index = np.full(len(users), -1, dtype=np.int64)
        unattached = 0
        for creative_row, key in enumerate(zip(self.creative.users, self.creative.items)):
            row = latest_row.get(key)
            if row is None:  # e.g. the user's first interaction: no history to condition on
                unattached += 1
                continue
            index[row] = creative_row
        if unattached:
            self.logger.warning("%d creative rows have no preceding history (first interaction of the "
                                "user, or not an interaction): not used", unattached)
        self.set_field_property(CREATIVE_INDEX, FeatureType.TOKEN, FeatureSource.INTERACTION, 1)
        self.inter_feat.update(Interaction({CREATIVE_INDEX: torch.from_numpy(index)}))

    def _train_rows_to_keep(self, train_dataset):
        return train_dataset.inter_feat[CREATIVE_INDEX].numpy() >= 0
